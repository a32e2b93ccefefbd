"""Data flows one way: a source module reads files into uint8 arrays (images.py holds them),
split.py limits and splits them, pipeline.py feeds them to Keras through tf.data."""
