"""The columns of log.txt, named once: the reference's five, then the two a run may add. The
engine fills them, the stages name them in the log, the curves group them, summarize.py and
plot.py read them, and a message calls each by its words (``WORDS``)."""
from typing import NamedTuple

__all__ = ["LEARNING_RATE", "TRAIN_LOSS", "VALID_LOSS", "TRAIN_ACC", "VALID_ACC", "EMA_VALID_ACC",
           "TTA_VALID_ACC", "REFERENCE_COLUMNS", "LOSSES", "ACCURACIES", "WORDS", "LogColumns"]

LEARNING_RATE = "Learning Rate"
TRAIN_LOSS = "Train Loss"
VALID_LOSS = "Valid Loss"
TRAIN_ACC = "Train Acc."
VALID_ACC = "Valid Acc."
EMA_VALID_ACC = "EMA Valid Acc."  # --ema: the averaged weights' accuracy
TTA_VALID_ACC = "TTA Valid Acc."  # --tta: with the mirror image's logits averaged in

# The reference's columns, in its order.
REFERENCE_COLUMNS = (LEARNING_RATE, TRAIN_LOSS, VALID_LOSS, TRAIN_ACC, VALID_ACC)
# What the curves draw side by side: the losses, and the accuracies.
LOSSES = (TRAIN_LOSS, VALID_LOSS)
ACCURACIES = (TRAIN_ACC, VALID_ACC, EMA_VALID_ACC, TTA_VALID_ACC)
# How a message names a column.
WORDS = {LEARNING_RATE: "learning rate", TRAIN_LOSS: "training loss",
         VALID_LOSS: "validation loss", TRAIN_ACC: "training accuracy",
         VALID_ACC: "validation accuracy", EMA_VALID_ACC: "EMA validation accuracy",
         TTA_VALID_ACC: "TTA validation accuracy"}


class LogColumns(NamedTuple):
    """Which columns a run's log.txt has: the reference's five, then EMA's and TTA's when the
    run evaluates them."""
    ema: bool = False
    tta: bool = False

    @property
    def names(self) -> list:
        return (list(REFERENCE_COLUMNS) + ([EMA_VALID_ACC] if self.ema else [])
                + ([TTA_VALID_ACC] if self.tta else []))
