"""The stages of a run that both scripts share, between the settings (utils.settings) and the
engine (utils.train.engine): the device and seed (device.py), the model as it trains (build.py),
reading the flags and a resumed checkpoint, the plan a resumed run continues, training with its
log and curves (stages.py), and evaluation with its report (report.py)."""
