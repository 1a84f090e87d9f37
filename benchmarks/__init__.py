"""Training speed, measured (``python bench.py SUBCOMMAND``). Five subcommands, a module each;
every number comes from the run that prints it.

    step      throughput of the training step (forward, backward, SGD) of a model on synthetic
              on-device data, beside the reference style (fp32, NCHW, eager) and the BN twin of an
              l_* model, as ratios. Model flags are the scripts' own, and the model is built as
              training builds it (micro-batches included):
                  python bench.py step -a l_resnet50 --batch 128 --device cuda --amp bf16 --channels-last --compile
                  python bench.py step -a l_resnet --depth 20 --batch 128 --device cpu
    ops       the aten ops one training step launches (forward and backward of its --iter-size
              micro-batches, views not counted), beside the same network with BatchNorm, and the
              most frequent ones: the kernel count of an eager step, the same on every machine:
                  python bench.py ops -a l_resnet --depth 20
                  python bench.py ops -a resnet --depth 20 --norm bcn --ws --ghost-batch 2
                  python bench.py ops -a l_resnet50 --batch 2 --iter-size 16
    pipeline  images/s a loader alone delivers to the device: cifar.py's DeviceLoader (with
              --policies: also with each AutoAugment-family policy, as ratios), or imagenet.py's
              loaders (train and val) against torchvision's reference recipe and the decode-only
              limit, over --data or over JPEGs made from the real CIFAR-10 archive and upscaled
              to ImageNet's 500x375; timed together in one process, then each alone in a process
              of its own as a user runs it (one line per path: NAME: RATE img/s median, and
              NAME (alone): RATE img/s median):
                  python bench.py pipeline cifar --device cuda
                  python bench.py pipeline cifar --device cuda --policies
                  python bench.py pipeline imagenet --images 2000 --workers 2 --device cpu
                  python bench.py pipeline imagenet --data ~/ILSVRC2012 --device cuda --device-decode
    overhead  a real cifar.py run against import + its images at the bare step rate + the bare
              evaluation (CPU target: <= 1.10x):
                  python bench.py overhead --train 5000 --epochs 2
    fold      inference (eval-mode forward) of a GN+WS model against the same model with WS
              folded into plain convolutions (export.py's deployment form), as a ratio:
                  python bench.py fold -a l_resnet --depth 20 --batch 128 --device cpu

Layout: cli.py (the command line: options declared as the scripts' flags are, with their
Ranges), timing.py (the one timing loop), fixtures.py (data made from the CIFAR-10 archive), and
step.py, ops.py, fold.py, pipeline.py (the loaders timed), imagenet_input.py and alone.py (pipeline
imagenet, together and alone), overhead.py. It imports the library, never the scripts.
"""
