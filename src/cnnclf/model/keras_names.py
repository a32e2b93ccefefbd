"""Names that Keras exports, read from its API files without importing Keras, and the layers a
config may name.

Importing Keras imports TensorFlow (seconds); config validation must stay fast, so the valid
layer, optimizer, metric, loss and application names are read from Keras's generated
`__init__.py` files.
"""

from dataclasses import dataclass

from cnnclf.compat import public_names

# The layers a config may name: an allow-list of layer families that only compute on the tensor
# they are given. A config is data, and a run directory's config.yaml is read again by `resume`
# and `train --from`, so a layer that loads or runs something from outside the config would turn
# a shared run directory into code: TFSMLayer (runs a SavedModel), TorchModuleWrapper, JaxLayer and
# FlaxLayer (foreign modules), Lambda (a function), lookup and vectorization layers (read
# vocabulary files), and wrappers that deserialize a nested layer from a mapping (TimeDistributed,
# Bidirectional, Pipeline, SpectralNormalization). An allow-list rather than a deny-list, so that
# a loader added in a later Keras is refused until someone has looked at it.
COMPUTE_LAYERS = frozenset(
    {
        # convolution, pooling and shape
        "Conv2D",
        "Convolution2D",
        "Conv2DTranspose",
        "Convolution2DTranspose",
        "DepthwiseConv2D",
        "SeparableConv2D",
        "SeparableConvolution2D",
        "MaxPooling2D",
        "MaxPool2D",
        "AveragePooling2D",
        "AvgPool2D",
        "GlobalAveragePooling2D",
        "GlobalAvgPool2D",
        "GlobalMaxPooling2D",
        "GlobalMaxPool2D",
        "AdaptiveAveragePooling2D",
        "AdaptiveMaxPooling2D",
        "Flatten",
        "Reshape",
        "Permute",
        "Cropping2D",
        "ZeroPadding2D",
        "UpSampling2D",
        "Identity",
        # dense, normalization, activation, regularization
        "Dense",
        "EinsumDense",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "UnitNormalization",
        "Normalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "Dropout",
        "SpatialDropout2D",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
        "ActivityRegularization",
        # image preprocessing and augmentation (inactive at inference unless they say otherwise)
        "Rescaling",
        "Resizing",
        "CenterCrop",
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomZoom",
        "RandomCrop",
        "RandomContrast",
        "RandomBrightness",
        "RandomHue",
        "RandomSaturation",
        "RandomSharpness",
        "RandomShear",
        "RandomGrayscale",
        "RandomColorJitter",
        "RandomColorDegeneration",
        "RandomInvert",
        "RandomPosterization",
        "RandomErasing",
        "RandomGaussianBlur",
        "RandomPerspective",
        "AutoContrast",
        "Equalization",
        "Solarization",
        "AugMix",
        "RandAugment",
    }
)


def layer_names() -> tuple[str, ...]:
    """The layers a config may name: the compute-only families this Keras exports."""
    return tuple(n for n in public_names("layers") if n in COMPUTE_LAYERS)


def refused_layer_names() -> tuple[str, ...]:
    """Keras layers a config may not name (see COMPUTE_LAYERS)."""
    return tuple(n for n in public_names("layers") if n[0].isupper() and n not in COMPUTE_LAYERS)


def optimizer_names() -> tuple[str, ...]:
    """Lower-case names accepted by keras.optimizers.get(), e.g. 'adam', 'rmsprop'."""
    skip = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer", "OptimizerMap"}
    return tuple(n.lower() for n in public_names("optimizers") if n[0].isupper() and n not in skip)


# Metrics and losses that fail for a softmax classifier whatever the labels (measured on Keras 3.15:
# each compiled and fitted one step with sparse and with one-hot labels).
_UNUSABLE = {
    "get",
    "serialize",
    "deserialize",
    "Metric",
    "MeanMetricWrapper",
    "Mean",
    "Sum",
    "IoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "PrecisionAtRecall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SpecificityAtSensitivity",
    "huber",
    "log_cosh",
    "binary_focal_crossentropy",
    "categorical_focal_crossentropy",
    "Loss",
    "CTC",
    "ctc",
    "Circle",
    "circle",
    "CategoricalGeneralizedCrossEntropy",
    "categorical_generalized_cross_entropy",
}


def labels_needed(name: str) -> str | None:
    """The label encoding a metric or loss needs: sparse for the sparse_ ones, onehot for the rest,
    None (either) for accuracy, which Keras matches to the labels."""
    if name in ("accuracy", "acc"):
        return None
    return "sparse" if "sparse" in name.lower() else "onehot"


def metric_names() -> tuple[str, ...]:
    """Metric functions and classes that compile(metrics=[...]) takes by name."""
    return ("accuracy", "acc") + tuple(n for n in public_names("metrics") if n not in _UNUSABLE)


def loss_names() -> tuple[str, ...]:
    """Loss functions and classes keras.losses.get() takes by name."""
    return tuple(n for n in public_names("losses") if n not in _UNUSABLE)


def application_names() -> tuple[str, ...]:
    """The keras.applications models (backbones), e.g. 'MobileNetV3Small'."""
    return tuple(n for n in public_names("applications") if n[0].isupper())


# The keras.applications models as backbones (backbones.py builds them): how each preprocesses its
# input, the smallest input keras.applications accepts, and its parameters without the classifier
# (at 224x224; 331 for NASNetLarge), measured on Keras 3.15.
@dataclass(frozen=True)
class Backbone:
    preprocessing: str  # builtin | tf | torch | caffe
    min_side: int  # the smallest input side keras.applications accepts
    parameters: int  # without the classification top, at 224x224 (331 for NASNetLarge)


BACKBONES = {
    "ConvNeXtTiny": Backbone("builtin", 32, 27_820_128),
    "ConvNeXtSmall": Backbone("builtin", 32, 49_454_688),
    "ConvNeXtBase": Backbone("builtin", 32, 87_566_464),
    "ConvNeXtLarge": Backbone("builtin", 32, 196_230_336),
    "ConvNeXtXLarge": Backbone("builtin", 32, 348_147_968),
    "DenseNet121": Backbone("torch", 32, 7_037_504),
    "DenseNet169": Backbone("torch", 32, 12_642_880),
    "DenseNet201": Backbone("torch", 32, 18_321_984),
    "EfficientNetB0": Backbone("builtin", 32, 4_049_571),
    "EfficientNetB1": Backbone("builtin", 32, 6_575_239),
    "EfficientNetB2": Backbone("builtin", 32, 7_768_569),
    "EfficientNetB3": Backbone("builtin", 32, 10_783_535),
    "EfficientNetB4": Backbone("builtin", 32, 17_673_823),
    "EfficientNetB5": Backbone("builtin", 32, 28_513_527),
    "EfficientNetB6": Backbone("builtin", 32, 40_960_143),
    "EfficientNetB7": Backbone("builtin", 32, 64_097_687),
    "EfficientNetV2B0": Backbone("builtin", 32, 5_919_312),
    "EfficientNetV2B1": Backbone("builtin", 32, 6_931_124),
    "EfficientNetV2B2": Backbone("builtin", 32, 8_769_374),
    "EfficientNetV2B3": Backbone("builtin", 32, 12_930_622),
    "EfficientNetV2S": Backbone("builtin", 32, 20_331_360),
    "EfficientNetV2M": Backbone("builtin", 32, 53_150_388),
    "EfficientNetV2L": Backbone("builtin", 32, 117_746_848),
    "InceptionResNetV2": Backbone("tf", 75, 54_336_736),
    "InceptionV3": Backbone("tf", 75, 21_802_784),
    "MobileNet": Backbone("tf", 32, 3_228_864),
    "MobileNetV2": Backbone("tf", 32, 2_257_984),
    "MobileNetV3Small": Backbone("builtin", 32, 939_120),
    "MobileNetV3Large": Backbone("builtin", 32, 2_996_352),
    "NASNetMobile": Backbone("tf", 32, 4_269_716),
    "NASNetLarge": Backbone("tf", 32, 84_916_818),
    "ResNet50": Backbone("caffe", 32, 23_587_712),
    "ResNet101": Backbone("caffe", 32, 42_658_176),
    "ResNet152": Backbone("caffe", 32, 58_370_944),
    "ResNet50V2": Backbone("tf", 32, 23_564_800),
    "ResNet101V2": Backbone("tf", 32, 42_626_560),
    "ResNet152V2": Backbone("tf", 32, 58_331_648),
    "VGG16": Backbone("caffe", 32, 14_714_688),
    "VGG19": Backbone("caffe", 32, 20_024_384),
    "Xception": Backbone("tf", 71, 20_861_480),
}


def too_small(name: str, shape) -> str | None:
    """Why images of `shape` are too small for backbone `name`, or None when they fit."""
    side = BACKBONES[name].min_side
    if min(shape[:2]) >= side:
        return None
    return (
        f"{name} takes images of at least {side}x{side} pixels, the data has {shape[0]}x{shape[1]}; set "
        f"data.image_shape to [{side}, {side}, 3] or more"
    )
