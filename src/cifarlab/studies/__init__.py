"""Studies: a TOML file of runs (``plan``), executed one after another or K per device (``local``) or as Slurm
jobs (``slurm``) by the ``runner``, which ends with the report."""
