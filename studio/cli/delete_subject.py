"""`python -m studio delete-subject DATASET --yes`: remove everything of one subject, everywhere, and list it."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("delete-subject", help="delete a dataset's subject everywhere: the dataset, its runs, their "
                                              "exported LoRAs/embeddings, evaluations and caches")
    p.add_argument("dataset", help="the dataset's name (under workspace/datasets/)")
    p.add_argument("--yes", action="store_true", help="delete; without it, only list what would be removed")
    p.add_argument("--with-outputs", action="store_true",
                   help="also remove the pictures generated with the subject's models (kept and listed otherwise)")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from studio.delete_subject import delete_subject, subject_files

    if not args.yes:
        plan = subject_files(studio, args.dataset, outputs=args.with_outputs)
        print("\n".join(plan.lines(done=False)))
        print(f"nothing was deleted: add --yes to delete these {len(plan.remove)} files and folders of "
              f"{plan.dataset!r}")
        return 1
    done = delete_subject(studio, args.dataset, outputs=args.with_outputs)
    print("\n".join(done.lines(done=True)))
    print(f"deleted subject {done.dataset!r}: {len(done.remove)} files and folders removed, {len(done.keep)} kept")
    return 0
