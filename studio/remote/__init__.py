"""Remote workers: queued runs sent to a Ray cluster's GPU workers instead of a child process here (`--workers
ray://HOST:PORT`). `address` checks where they go and `bundle` says what travels, without Ray; `worker` (the Ray
actor that runs a job on a worker box) and `child` (the job's child here, which drives it) import Ray, and only
they do, so nothing of Ray is loaded without --workers."""
