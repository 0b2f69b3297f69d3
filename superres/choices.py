"""What the scripts' flags choose for the modules that run TensorFlow: precision, tile, export formats and
benchmark size (generate.py), the output activation (train.py), with their checks.

Defined here, without TensorFlow, because the scripts define and check their flags before they load those
modules: TensorFlow's start-up takes seconds, and a mistyped flag should be reported at once.
"""
import importlib.util

from superres import files

PRECISIONS = ('float32', 'bfloat16')  # --precision: see inference.layer2_in_bfloat16
DEFAULT_TILE = 512  # LR pixels per tile side: about 250 MiB of activations for rgb, any image size
EXPORT_FORMATS = ('dnn_superres', 'saved_model', 'tflite', 'onnx')  # what export.export writes
# train.py --output_activation: espcn.OUTPUT_ACTIVATIONS, which imports TensorFlow; tests/test_fast_errors.py
# checks that they agree
OUTPUT_ACTIVATIONS = ('tanh', 'none')


def export_formats_for(channels, requested):
  """The formats to write: `requested` (empty: every one that applies), refusing dnn_superres for 'rgb'."""
  unknown = sorted(set(requested) - set(EXPORT_FORMATS))
  if unknown:
    raise files.InputError(f'--export_formats={",".join(unknown)}: expected {", ".join(EXPORT_FORMATS)}')
  if 'dnn_superres' in requested and channels == 'rgb':
    raise files.InputError("--export_formats=dnn_superres: OpenCV's dnn_superres runs its espcn on Y alone; "
                           'export a --channels=y model (an rgb model exports saved_model, tflite and onnx)')
  converter_installed = importlib.util.find_spec('tf2onnx') is not None  # requirements-export.txt
  if 'onnx' in requested and not converter_installed:
    raise files.InputError('--export_formats=onnx: needs tf2onnx: pip install -r requirements-export.txt')
  return list(requested) or [name for name in EXPORT_FORMATS if (channels == 'y' or name != 'dnn_superres')
                             and (converter_installed or name != 'onnx')]


def parse_size(text, scale):
  """--size as (width, height): positive multiples of the scale, as an output size must be."""
  try:
    width, height = (int(part) for part in text.lower().split('x'))
  except ValueError:
    raise files.InputError(f'--size={text}: expected WIDTHxHEIGHT, e.g. 1920x1080') from None
  if min(width, height) <= 0 or width % scale or height % scale:
    raise files.InputError(f'--size={text}: width and height must be positive multiples of --scale={scale}')
  return width, height
