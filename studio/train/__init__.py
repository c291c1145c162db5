"""Training: run configs, the one loop for LoRA/DreamBooth/textual inversion, checkpoints, validation, export, jobs."""
