"""What a run leaves in its folder and who may write it: log.txt and its curves (logger.py),
run.json (record.py), the folder's lock and its run files (run_folder.py), -e's report
(report.py), and results over seeds read back from run folders (summary.py)."""
