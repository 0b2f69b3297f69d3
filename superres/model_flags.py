"""--scale and --channels, the two flags that every script takes and every data file and checkpoint records."""
from absl import flags


CHANNEL_MODES = {'rgb': 3, 'y': 1}  # --channels -> number of channels the network sees


def define_model_flags():
  """--scale and --channels, which every script takes and every data file and checkpoint records."""
  flags.DEFINE_integer('scale', 3, 'Upscaling factor r (an integer >= 2).', lower_bound=2)
  flags.DEFINE_enum('channels', 'rgb', list(CHANNEL_MODES),
                    "'rgb': the network sees R, G and B (the blog); 'y': only luminance Y of YCbCr "
                    "(the paper).")
