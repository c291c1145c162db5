"""A run that starts from an earlier run's LoRA ("add a subject"): the subjects its export header names, and the
config its validation sees (the earlier subjects validated too)."""

from __future__ import annotations

from dataclasses import replace

from studio.train import data
from studio.train.config import RunConfig


def subject_facts(config: RunConfig, items, inherited: list[dict]) -> list[dict]:
    """The export header's subjects (none for a plain one-subject run): this run's, after those of the run it
    continued (whose LoRA it started from, so they are in its weights too)."""
    own = [{"dataset": s.dataset, "trigger": s.trigger,
            "dataset_hash": data.dataset_hash([i for i in items if i.subject == k])}
           for k, s in enumerate(config.subjects)]
    if not config.extra_subjects and not inherited:
        return []
    mine = {s["trigger"] for s in own}
    return [s for s in inherited if s["trigger"] not in mine] + own


def watched_config(settings, config: RunConfig, inherited: list[dict], log) -> RunConfig:
    """The config validation sees: the run's, and for a run that continues another's LoRA ("add a subject") its
    earlier subjects too, as extra subjects whose prompts and scores are validated (the base grid, made with the
    earlier LoRA before the first step, is their "before"); they are not trained on. An earlier subject whose dataset
    is gone is left out, saying so. (A staged FLUX run encodes its prompts before it knows them: not there.)"""
    from studio.data.library import find_dataset
    from studio.train.config import Subject

    mine = {s.trigger.lower() for s in config.subjects}
    earlier = []
    for s in inherited:
        if s["trigger"].lower() in mine:
            continue
        try:
            find_dataset(settings, s["dataset"])
        except ValueError:
            log.event("message", text=f"earlier subject {s['trigger']!r}: dataset {s['dataset']!r} is not there, so "
                                      f"what this run leaves of it is not validated")
            continue
        earlier.append(Subject(s["dataset"], s["trigger"]))
    if not earlier:
        return config
    log.event("message", text=f"validating the earlier subjects too ({', '.join(s.trigger for s in earlier)}): the "
                              f"grid before the first step is what run {config.continue_from} draws")
    return replace(config, extra_subjects=[*config.extra_subjects, *earlier])
