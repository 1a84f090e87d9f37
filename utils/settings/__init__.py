"""The settings of a run: what a flag is (flag.py), every shared flag declared once (table.py),
the typed values the command line is read into once (values.py, by flags.py), and a resumed
checkpoint's recorded flags merged in (resume.py). Nothing here acts on a value: the layers
above (utils.train, utils.data, utils.records, utils.session) do."""
