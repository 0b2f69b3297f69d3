"""What the tools' charts share (tools.training_curve, tools.plot_events): matplotlib figures drawn without a
display, one look, and written in the format that --output's extension names (PNG, or SVG/PDF for vectors).

matplotlib comes with requirements-tools.txt: the library and the scripts of the repo do not need it.
"""
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from superres import files

DPI = 200  # a PNG 8 inches wide is 1600 pixels: sharp at a README's ~900-pixel width, even on a dense screen
GRID_COLOUR = '#e4e4e4'
BICUBIC_COLOUR = '#777777'


def new_figure(width, height):
  """A width x height inch figure on Agg's canvas: set here for this figure rather than through pyplot's
  global backend, so that no display is needed and nothing global changes when a test draws in-process."""
  figure = Figure(figsize=(width, height), dpi=DPI)
  FigureCanvasAgg(figure)
  return figure


def style_axes(axes):
  """A light grid behind the data and no top or right frame line."""
  axes.grid(color=GRID_COLOUR, linewidth=0.8)
  axes.set_axisbelow(True)
  axes.spines[['top', 'right']].set_visible(False)


def check_output(path):
  """Before the work: one error line if matplotlib cannot write the format `path` ends with, or if its
  folder is not writable."""
  output_format(path)
  files.ensure_writable_parent(path)


def output_format(path):
  """The file format that `path` ends with (png, svg, pdf...); one error line if matplotlib cannot write it."""
  extension = os.path.splitext(path)[1][1:].lower()
  if extension not in FigureCanvasAgg.get_supported_filetypes():
    raise files.InputError(f'{path}: expected a .png, .svg or .pdf file name')
  return extension


def save(figure, path):
  """Writes the figure to `path` via a temporary file (files.atomic_output), in the format of its extension."""
  with files.atomic_output(path) as temporary:
    figure.savefig(temporary, format=output_format(path), dpi=DPI)
