"""Mining a synthetic identity (seed 000): candidates from the generator or a folder, a sim-group of one face grown
by face distance, near misses kept apart, run as a job in a child process, and the group turned into a dataset."""

from studio.mine.group import Member, Rules, SimGroup, Verdict
from studio.mine.jobs import (MiningStatus, cancel_mining, list_mining, mining_status, resume_mining, start_mining,
                              wait_mining)
from studio.mine.request import MiningRequest
from studio.mine.run import MiningResult, mine
from studio.mine.to_dataset import GroupDataset, group_to_dataset

__all__ = ["GroupDataset", "Member", "MiningRequest", "MiningResult", "MiningStatus", "Rules", "SimGroup", "Verdict",
           "cancel_mining", "group_to_dataset", "list_mining", "mine", "mining_status", "resume_mining",
           "start_mining", "wait_mining"]
