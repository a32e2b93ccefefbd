"""A run's model at work. Everything here runs one inference graph (loading.py), so evaluation,
predict, every export and the server give the same answers; nothing here imports training.

    loading.py   the model loaded safely (in float32), inference_model (test-time views), Predictor
    evaluate.py  the test set: metrics.json (measures.py's measures) and predictions.npz
    calibration.py  the temperature and the threshold for unknown answers, fitted on validation
    predict.py   image files -> classes
    export.py    SavedModel, TFLite, ONNX, each with its .json; quantize.py: their quantized forms, checked
    serve.py     the HTTP API (FastAPI); server.py: the server around it (uvicorn, hosts, limits)
"""
