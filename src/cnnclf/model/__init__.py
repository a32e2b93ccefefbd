"""The model: what build_model makes from the config's model: section.

    build.py        build_model: input -> augmentation -> scaling -> (whitening) -> layers or a
                    backbone -> classifier; layer arguments checked; test-time shift limits
    presets.py      the built-in architectures, written as layer lists
    backbones.py    keras.applications feature extractors: preprocessing as layers, freezing
    keras_names.py  the Keras names a config may use (layers, losses, metrics, backbones)
    loss.py         the loss a config names (training compiles it, evaluation scores with it)
    whitening.py    model.whiten: a frozen first convolution that whitens patches (airbench's)
    gradcam.py      where the model looked: Grad-CAM heatmaps

This package knows nothing of fitting, run directories or plots.
"""
