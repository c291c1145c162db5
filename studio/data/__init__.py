"""Datasets: ingest and validate uploads, face-aware crop, bystander blur, captions, identity check, storage on disk."""

from studio.data.captions import CaptionEdit, CaptionRequest, caption_images
from studio.data.check import CheckRequest, CheckResult, check_dataset, drop_flagged
from studio.data.library import (Dataset, DatasetImage, dataset_trigger, delete_dataset, drop_images, edit_captions,
                                 export_dataset, find_dataset, list_datasets, load_dataset, read_dataset, set_captions,
                                 set_mask)
from studio.data.prepare import PrepareRequest, PrepareResult, prepare_dataset

__all__ = ["CaptionEdit", "CaptionRequest", "CheckRequest", "CheckResult", "Dataset", "DatasetImage", "PrepareRequest",
           "PrepareResult", "caption_images", "check_dataset", "dataset_trigger", "delete_dataset", "drop_flagged",
           "drop_images", "edit_captions", "export_dataset", "find_dataset", "list_datasets", "load_dataset",
           "prepare_dataset", "read_dataset", "set_captions", "set_mask"]
