"""Turn a mining job's group into a dataset: the members' pictures through the Dataset tab's own preparation, so
crops, captions with the trigger word, dataset.json and the identity check come as for uploaded photos."""

from __future__ import annotations

from dataclasses import dataclass

from studio.data.captions import DEFAULT_TEMPLATE
from studio.data.prepare import PrepareRequest, PrepareResult, default_size, prepare_dataset
from studio.mine import disk
from studio.mine.disk import mining_folder
from studio.mine.jobs import read_request
from studio.progress import ProgressFn, StopFn, never_stop, no_progress


@dataclass(frozen=True)
class GroupDataset:
    job: str  # the mining job whose group it is
    name: str  # the dataset to write under workspace/datasets/
    trigger: str  # the rare word every caption starts with
    class_word: str = "person"
    size: int | None = None  # None: the default model's native resolution
    crop: str = "face"
    margin: float = 1.0
    captioner: str = "template"
    template: str = DEFAULT_TEMPLATE


def group_to_dataset(studio, request: GroupDataset, progress: ProgressFn = no_progress,
                     should_stop: StopFn = never_stop) -> PrepareResult:
    """Write dataset `request.name` from the group as it stands (a job still running gives its group so far).
    The members' faces are in the face cache already, so no face is detected again."""
    folder = mining_folder(studio.settings, request.job)
    if not (folder / disk.REQUEST).is_file():
        raise ValueError(f"`job` {request.job!r} is not a mining job (no {folder / disk.REQUEST})")
    saved = disk.read_state_json(folder)
    members = saved["group"]["members"] if saved else []
    if not members:
        raise ValueError(f"mining job {request.job!r} has no group yet: no face was admitted")
    pictures = tuple(folder / m["file"] for m in members)
    missing = [p.name for p in pictures if not p.is_file()]
    if missing:
        raise ValueError(f"mining job {request.job!r} lacks the pictures of {len(missing)} members "
                         f"({', '.join(missing[:3])}...)")
    mined = read_request(folder)
    prepare = PrepareRequest(inputs=pictures, name=request.name, trigger=request.trigger,
                             class_word=request.class_word, size=request.size or default_size(studio),
                             crop=request.crop, margin=request.margin, tolerance=mined.tolerance,
                             captioner=request.captioner, template=request.template)
    return prepare_dataset(studio, prepare, progress, should_stop)
