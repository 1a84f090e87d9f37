"""torch.hub entry points: every architecture of cifar.py (as cifar_<arch>) and imagenet.py,
built as the scripts build them, optionally from a weights file (a checkpoint, export.py's
.safetensors, or a state_dict). utils/session/hub.py says how.

    model = torch.hub.load("PATH/TO/THIS/REPO", "cifar_l_resnet", source="local",
                           weights="l_resnet-20.safetensors")
"""
from utils.session.hub import entry_points as _entry_points

# What importing the project's library needs (requirements.txt has them all).
dependencies = ["torch", "torchvision", "numpy", "matplotlib", "progress"]

globals().update(_entry_points())
