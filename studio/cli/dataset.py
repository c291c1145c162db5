"""`python -m studio dataset prepare|list|show|check|export|delete`: build and inspect training sets."""

from __future__ import annotations

import argparse
from pathlib import Path


def _unit_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.data.prepare import PrepareRequest
    from studio.faces import DEFAULT_TOLERANCE

    p = sub.add_parser("dataset", help="prepare and inspect training datasets (workspace/datasets/)")
    verbs = p.add_subparsers(dest="dataset_verb", required=True, parser_class=type(p))

    prep = verbs.add_parser("prepare", help="ingest photos, crop around the face, caption, write the dataset")
    add_flags(prep, PrepareRequest, required=("inputs", "name", "trigger"))  # every setting, by its declared flag
    prep.set_defaults(run=run_prepare, gpu_work=True)  # captioners and face models: a turn on the device

    ls = verbs.add_parser("list", help="list datasets")
    ls.set_defaults(run=run_list)

    show = verbs.add_parser("show", help="show a dataset's pictures, captions and flags")
    show.add_argument("name")
    show.set_defaults(run=run_show)

    check = verbs.add_parser("check", help="identity check: which pictures may not show the subject")
    check.add_argument("name")
    check.add_argument("--tolerance", type=_unit_float, default=DEFAULT_TOLERANCE)
    check.add_argument("--reference", type=Path, action="append", default=[])
    check.add_argument("--drop", action="store_true", help="remove the flagged pictures (no face, far from set)")
    check.set_defaults(run=run_check)

    export = verbs.add_parser("export", help="zip a dataset to workspace/exports/NAME.zip")
    export.add_argument("name")
    export.add_argument("--with-originals", action="store_true",
                        help="include the uploads (with bystanders' faces blurred when they were protected)")
    export.add_argument("--kohya", action="store_true",
                        help="kohya's layout instead (img/, mask/ for --masked_loss, dataset.toml): NAME-kohya.zip")
    export.set_defaults(run=run_export)

    delete = verbs.add_parser("delete", help="delete a dataset's folder only (delete-subject removes its runs, "
                                             "exports and caches too)")
    delete.add_argument("name")
    delete.set_defaults(run=run_delete)


def request_from_args(args, studio):
    """The PrepareRequest the flags ask for (the size, when not given, the default model's native one, as the
    Dataset tab starts with it): the one conversion the tab and /dataset_prepare go through."""
    from studio.cli.flags import given
    from studio.data.prepare import PrepareRequest, default_size
    from studio.fields import build

    return build(PrepareRequest, {"size": default_size(studio), **given(args, PrepareRequest)})


def run_prepare(args, studio) -> int:
    from studio.data import prepare_dataset

    result = prepare_dataset(studio, request_from_args(args, studio))
    print(result.summary())
    return 0


def run_list(args, studio) -> int:
    from studio.data import list_datasets

    rows = list_datasets(studio.settings)
    if not rows:
        print(f"no datasets in {studio.settings.datasets_dir}")
    for d in rows:
        print(f"{d.name}\t{d.problem}" if d.problem else
              f"{d.name}\t{d.images} pictures\t{d.size} px\ttrigger {d.trigger}\t{d.flagged} flagged")
    return 0


def run_show(args, studio) -> int:
    from studio.data import load_dataset

    d = load_dataset(studio.settings, args.name)
    print(f"dataset {d.name}: {len(d.images)} pictures, trigger {d.trigger!r}, class {d.class_word!r}, "
          f"{d.settings.get('size')} px, crop {d.settings.get('crop')} ({d.folder})")
    for im in d.images:
        score = "no face" if im.to_set is None and im.to_reference is None else \
            f"{im.to_reference if im.to_reference is not None else im.to_set:.3f}"
        print(f"{im.file_name}\t{im.source}\t{score}\tblurred {im.blurred}\t{im.caption}"
              + (f"\t[{'; '.join(im.flags)}]" if im.flags else ""))
    for r in d.refused:
        print(f"refused {r['name']}: {r['reason']}")
    return 0


def run_check(args, studio) -> int:
    from studio.data import CheckRequest, check_dataset, drop_flagged

    result = check_dataset(studio.settings, CheckRequest(args.name, args.tolerance, tuple(args.reference)))
    for r in result.rows:
        score = "-" if r.score is None else f"{r.score:.3f}"
        print(f"{r.file_name}\t{r.source}\t{score}\tfaces {r.faces_text}\t{'; '.join(r.flags)}")
    print(result.summary())
    if args.drop:
        dropped = drop_flagged(studio.settings, args.name)
        print(f"dropped {len(dropped)}: {', '.join(dropped) or 'none'}")
    return 0


def run_export(args, studio) -> int:
    from studio.data import export_dataset

    if args.kohya:
        from studio.data.kohya import export_kohya

        if args.with_originals:
            raise ValueError("`--with-originals` does not go with --kohya: a kohya folder holds the training pictures")
        print(export_kohya(studio.settings, args.name))
        return 0
    print(export_dataset(studio.settings, args.name, include_originals=args.with_originals))
    return 0


def run_delete(args, studio) -> int:
    from studio.data import delete_dataset

    delete_dataset(studio.settings, args.name)
    print(f"deleted dataset {args.name}")
    return 0
