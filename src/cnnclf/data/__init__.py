"""The data, from files to tf.data. Data flows one way:

    sources.py   THE TABLE of data sources: name -> module, the datasets it can hold, the keys it reads
    datasets.py  the datasets cnnclf knows by name (shape, class names) and this project's copies
    <source>.py  one module per source: load(cfg) -> Images (whole arrays: idx.py, csv_files.py,
                 npz.py, cifar_pickles.py, keras_download.py, sklearn_digits.py), or
                 list_files(cfg) -> ImageFiles (image files, decoded later: image_folder.py, manifest.py)
    images.py    Images (uint8 arrays) and the checks every source's data gets (check_classes)
    files.py     ImageFiles, reading files from a folder or zip (bounded: regular files, zip entries)
    decoding.py  decode_image: one image into pixels (formats allowed, EXIF, resize policy, limits)
    split.py     train / validation / test: by index for arrays, by a seeded hash of each file's name
                 for image files; split.csv
    parts.py     a split's images: in memory, or streamed from files or a decoded-pixels cache (cache.py);
                 memory.py: the memory budget data.storage: auto decides by
    dataset.py   load(cfg, seed) -> Dataset: all of the above, in order
    pipeline.py  tf.data batches over a part

To add a data source: write one module here with load(cfg) or list_files(cfg), and add its row
to SOURCES in sources.py (naming the config keys it reads). Nothing else changes: the config
checks, the loader and `cnnclf init` read the table.

This package knows nothing of models, training, run directories or plots.
"""
