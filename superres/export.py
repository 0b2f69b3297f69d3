"""Exports of a trained model that load without this repo: OpenCV's dnn_superres, a SavedModel, TFLite, ONNX.

generate.py --export_dir=DIR writes them (README, "Use the model elsewhere"):

- DIR/ESPCN_x<r>.pb ('y' models): a frozen GraphDef that OpenCV's dnn_superres (OpenCV 4.x and 5.0) runs as
  its "espcn". OpenCV feeds the network full-range Y / 255 (its BGR -> YCrCb) and expects the same back,
  then merges chroma upscaled bilinearly; this repo's network works on studio-range Y (BT.601, 16..235). The
  graph converts the range on its way in and out, and uses tf.nn.depth_to_space, which OpenCV implements
  and which for one channel is exactly PS (espcn.phase_shift).
- DIR/ESPCN_x<r>.onnx ('y' models): the same graph for OpenCV 5.1 on, whose dnn_superres reads ONNX alone.
  It feeds Y as [1, H, W, 1] (NHWC, as the TensorFlow graph takes it) and reads the output as NCHW
  [1, 1, rH, rW]: a file with any other layout fails in OpenCV's merge of Y with chroma.
- DIR/saved_model/: the whole reconstruction (inference.reconstruction_graph), uint8 RGB [H, W, 3] in,
  uint8 RGB [rH, rW, 3] out, as the serving_default signature of a SavedModel.
- DIR/espcn_<channels>_x<r>.tflite and ..._float16.tflite: the network alone, [1, H, W, C] in [0, 1] in and
  [1, rH, rW, C] out, with float32 weights and with float16 weights (half the file).
- DIR/espcn_<channels>_x<r>.onnx: the network alone, NCHW as ONNX runtimes expect: [1, C, H, W] in [0, 1]
  in, [1, C, rH, rW] out, the same values as the .tflite file.

The ONNX files are the TensorFlow graphs converted by tf2onnx (requirements-export.txt), so that the network
has one definition, espcn.espcn; PS comes out as its reshapes and transposes, which ONNX Runtime and OpenCV
run, in the .onnx of the network, and as ONNX's DepthToSpace in OpenCV's file.
"""
import os
import shutil

import numpy as np
from absl import logging

from superres.runtime import tf  # first: TensorFlow's start-up settings (runtime.py), before espcn imports it
import espcn
from superres import choices
from superres import files
from superres import model_flags
from superres import runtime

try:
  import tf2onnx  # requirements-export.txt: the onnx format
except ImportError:
  tf2onnx = None

LAYERS = ('layer1-conv1', 'layer2-conv2', 'layer3-conv3')
SIGNATURE_INPUT, SIGNATURE_OUTPUT = 'image', 'upscaled'  # serving_default's argument and result
STUDIO_GAIN, STUDIO_OFFSET = 219.0 / 255.0, 16.0 / 255.0  # studio-range Y in [0, 1] = gain * full + offset
ONNX_OPSET = 17  # ONNX Runtime, and OpenCV 5.1's importer, run it


formats_for = choices.export_formats_for  # (in choices.py, without TensorFlow: generate.py checks it first)


def read_weights(upscaler):
  """{'layer1-conv1/weights': array, ...}: the network's six weights, constants of the upscaler's frozen graph."""
  names = [f'{layer}/{name}' for layer in LAYERS for name in ('weights', 'bias')]
  return dict(zip(names, upscaler.session.run([f'{name}:0' for name in names])))


def dnn_superres_graph_def(weights, scale, output_activation):
  """The 'y' network for OpenCV, frozen: full-range Y [1, H, W, 1] in [0, 1] in, [1, rH, rW, 1] out.

  Only the ops OpenCV's TensorFlow importer knows: Mul and Add for the range, Conv2D + BiasAdd + Tanh, and
  DepthToSpace (registered by dnn_superres) for PS: for one channel, PS is depth_to_space (espcn.phase_shift).
  """
  graph = tf.Graph()
  with graph.as_default():
    full_y = tf.placeholder(tf.float32, [1, None, None, 1], name='input')  # what dnn_superres feeds
    hidden = full_y * np.float32(STUDIO_GAIN) + np.float32(STUDIO_OFFSET)  # [1, H, W, 1] studio range
    for layer in LAYERS:
      kernel, bias = weights[f'{layer}/weights'], weights[f'{layer}/bias']
      hidden = tf.nn.bias_add(tf.nn.conv2d(hidden, kernel, [1, 1, 1, 1], 'SAME'), bias)
      if layer != LAYERS[-1]:
        hidden = tf.tanh(hidden)  # [1, H, W, 64], then [1, H, W, 32]
    studio_y = tf.nn.depth_to_space(hidden, scale)  # [1, rH, rW, 1]
    if output_activation == 'tanh':
      studio_y = tf.tanh(studio_y)
    tf.identity((studio_y - np.float32(STUDIO_OFFSET)) / np.float32(STUDIO_GAIN), name='output')
  return graph.as_graph_def()


def network_session(weights, scale, channels, output_activation):
  """A session with the network alone, its weights constants: ([1, H, W, C] input, output, session)."""
  graph = tf.Graph()
  with graph.as_default():
    lr_images = tf.placeholder(tf.float32, [1, None, None, model_flags.CHANNEL_MODES[channels]], name='lr_images')
    constants = lambda getter, name, *args, **kwargs: tf.constant(weights[name])  # get_variable -> a constant
    with tf.variable_scope(tf.get_variable_scope(), custom_getter=constants):
      sr_images = tf.identity(espcn.espcn(lr_images, scale, model_flags.CHANNEL_MODES[channels], output_activation),
                              name='sr_images')
  return lr_images, sr_images, tf.Session(graph=graph)


def write_tflite(weights, scale, channels, output_activation, path, float16_weights=False):
  """The network as a TFLite flatbuffer; float16_weights halves the file (weights dequantized at load)."""
  lr_images, sr_images, session = network_session(weights, scale, channels, output_activation)
  with session:
    converter = tf.lite.TFLiteConverter.from_session(session, [lr_images], [sr_images])
    if float16_weights:
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
      converter.target_spec.supported_types = [tf.float16]
    logging.set_verbosity(logging.WARNING)  # the converter's INFO notes on stderr
    flatbuffer = converter.convert()
  with open(path, 'wb') as stream:
    stream.write(flatbuffer)


def name_dynamic_sizes(model, scale):
  """Names the unknown sizes of the ONNX model's input 'height' and 'width' and of its output 'r*height' and
  'r*width', for whoever reads the file (tf2onnx numbers them)."""
  for value, names in ((model.graph.input[0], ('height', 'width')),
                       (model.graph.output[0], (f'{scale}*height', f'{scale}*width'))):
    unknown = [dim for dim in value.type.tensor_type.shape.dim if dim.dim_param]  # H and W; N and C are known
    for dim, name in zip(unknown, names, strict=True):
      dim.dim_param = name


def write_onnx(graph_def, input_name, output_name, scale, path, nchw_input):
  """The frozen graph `graph_def` (NHWC, as TensorFlow runs it) as an ONNX file whose output is NCHW, and
  whose input is too when `nchw_input`."""
  with runtime.quiet_stderr():  # TensorFlow's notes as tf2onnx optimizes the graph
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[f'{input_name}:0'], output_names=[f'{output_name}:0'], opset=ONNX_OPSET,
        inputs_as_nchw=[f'{input_name}:0'] if nchw_input else None, outputs_as_nchw=[f'{output_name}:0'],
        tensors_to_rename={f'{input_name}:0': input_name, f'{output_name}:0': output_name})
  name_dynamic_sizes(model, scale)
  with open(path, 'wb') as stream:
    stream.write(model.SerializeToString())


def write_saved_model(upscaler, path):
  """The upscaler's frozen reconstruction graph as a SavedModel: serving_default, uint8 RGB in and out."""
  builder = tf.saved_model.Builder(path)
  signature = tf.saved_model.predict_signature_def(inputs={SIGNATURE_INPUT: upscaler.lr_pixels},
                                                   outputs={SIGNATURE_OUTPUT: upscaler.sr_pixels})
  with upscaler.session.graph.as_default():
    builder.add_meta_graph_and_variables(upscaler.session, [tf.saved_model.SERVING],
                                         signature_def_map={'serving_default': signature}, strip_default_attrs=True)
  builder.save()


def export(upscaler, export_dir, formats):
  """Writes the requested exports of `upscaler`'s model into export_dir, all or nothing: they are made in a
  temporary folder beside it, which replaces export_dir only when complete. Returns the paths written."""
  scale, channels, output_activation = upscaler.scale, upscaler.channels, upscaler.output_activation
  weights = read_weights(upscaler)
  staged = f'{os.path.abspath(export_dir)}.{os.getpid()}.tmp'
  os.makedirs(staged)
  try:
    if 'dnn_superres' in formats:
      with open(os.path.join(staged, f'ESPCN_x{scale}.pb'), 'wb') as stream:
        stream.write(dnn_superres_graph_def(weights, scale, output_activation).SerializeToString())
    if 'saved_model' in formats:
      write_saved_model(upscaler, os.path.join(staged, 'saved_model'))
    if 'tflite' in formats:
      for suffix, float16_weights in (('', False), ('_float16', True)):
        write_tflite(weights, scale, channels, output_activation,
                     os.path.join(staged, f'espcn_{channels}_x{scale}{suffix}.tflite'), float16_weights)
    if 'onnx' in formats:
      lr_images, sr_images, session = network_session(weights, scale, channels, output_activation)
      with session:
        write_onnx(session.graph.as_graph_def(), lr_images.op.name, sr_images.op.name, scale,
                   os.path.join(staged, f'espcn_{channels}_x{scale}.onnx'), nchw_input=True)
      if channels == 'y':  # OpenCV's dnn_superres runs Y alone
        write_onnx(dnn_superres_graph_def(weights, scale, output_activation), 'input', 'output', scale,
                   os.path.join(staged, f'ESPCN_x{scale}.onnx'), nchw_input=False)
    written = sorted(os.listdir(staged))
    files.replace_folder(staged, export_dir)
  finally:
    shutil.rmtree(staged, ignore_errors=True)
  return [os.path.join(export_dir, name) for name in written]
