"""The settings of a run: its command line read once into typed values (flags.py, from the table
of flags.py), a resumed checkpoint's recorded flags merged in, and the stages a script's run goes
through (run.py)."""
