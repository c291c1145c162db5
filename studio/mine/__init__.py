"""Mining a synthetic identity (seed 000): candidates from the generator or a folder, a sim-group of one face grown
by face distance, near misses kept apart, run as a job in a child process, and the group turned into a dataset."""

from studio.mine.group import Member, Rules, SimGroup, Verdict

__all__ = ["Member", "Rules", "SimGroup", "Verdict"]
