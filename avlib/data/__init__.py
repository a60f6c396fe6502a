"""Data: the generated audio-visual "orchestra", datafiles, datasets and video extraction.

* :mod:`avlib.data.datafile` - CAV-MAE datafiles (JSON clip lists) and label CSVs; the dataset layout.
* :mod:`avlib.data.dataset` - :class:`~avlib.data.dataset.AVDataset`: a clip -> fbank, frame(s), label.
* :mod:`avlib.data.video` - mp4 writing/reading and extraction of any video into the dataset layout.
* :mod:`avlib.data.orchestra` - the generated dataset (``python -m avlib data``).

Dataset layout (one loader reads generated data, CAV-MAE-style prepared real data and a learner's videos)::

    <root>/datafiles/{unlabeled,train,val,test}.json   {"data": [{"video_id", "wav", "video_path", "labels"}]}
    <root>/labels.csv                                  index,mid,display_name
    <root>/audio_stats.json                            {"mean": ..., "std": ...} of the log-mel values
    <root>/audio/<id>.wav                              16-kHz mono
    <root>/frames/frame_<i>/<id>.jpg                   10 evenly spaced frames, i = 0..9

Import submodules explicitly (``from avlib.data.dataset import AVDataset``); this package imports nothing.
"""
