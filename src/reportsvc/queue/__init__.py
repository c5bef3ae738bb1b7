"""The queue: the only code that reads or writes the jobs and sections tables."""
