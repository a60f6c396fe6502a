"""Video files: write an mp4 (H.264 + AAC), read one back, and extract clips into the dataset layout.

Everything goes through PyAV, which bundles FFmpeg (no system ffmpeg needed).

* :func:`write_mp4` - frames ``[N, H, W, 3]`` uint8 + mono float audio -> H.264 (yuv420p) + AAC mp4.
* :func:`read_video` - any video file -> all frames (or ``num_frames`` evenly spaced) + 16-kHz mono audio.
* :func:`extract_clip` - one video -> ``audio/<id>.wav`` + ``frames/frame_{0..9}/<id>.jpg`` (CAV-MAE layout).
* :func:`extract_videos` - many videos -> clips + a datafile (``datafiles/<split>.json``) listing them.

The dataset layout (shared with :mod:`avlib.data.datafile` and the generator)::

    <root>/audio/<id>.wav                  16-kHz mono WAV
    <root>/frames/frame_<i>/<id>.jpg       10 evenly spaced frames, i = 0..9
    <root>/datafiles/<split>.json          {"data": [{"video_id", "wav", "video_path", "labels"}]}
    <root>/labels.csv                      index,mid,display_name
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avlib import audio as A
from avlib import env
from avlib.data.datafile import AUDIO_DIR, DATAFILES_DIR, FRAMES_DIR, NUM_FRAMES, Entry, write_datafile

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


# ------------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------------
def write_mp4(path: str | Path, frames: np.ndarray, audio: np.ndarray | None, sample_rate: int, fps: float,
              *, crf: int = 23, preset: str = "veryfast", audio_bitrate: int = 64_000) -> Path:
    """Write ``frames`` ``[N, H, W, 3]`` uint8 RGB and mono ``audio`` ``[S]`` float in [-1, 1] as an mp4.

    Video is H.264 (libx264, yuv420p, so H and W must be even), audio is AAC mono at ``sample_rate``.
    ``audio=None`` writes a video without an audio track. Returns the path written (parents are created).
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_mp4({path}): frames must be a uint8 array [N, H, W, 3] (RGB); got "
                         f"{frames.dtype} {tuple(frames.shape)}. Convert with "
                         "(x * 255).clip(0, 255).astype(np.uint8).")
    n, h, w, _ = frames.shape
    if n == 0:
        raise ValueError(f"write_mp4({path}): no frames given; pass at least one frame.")
    if h % 2 or w % 2:
        raise ValueError(f"write_mp4({path}): H.264 yuv420p needs even height and width, got {h}x{w}; "
                         "crop or pad the frames by one pixel.")
    if fps <= 0:
        raise ValueError(f"write_mp4({path}): fps must be > 0, got {fps}.")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"write_mp4({path}): audio must be mono [S], got shape {tuple(audio.shape)}; "
                             "mix down with audio.mean(axis=-1) first.")
        audio = np.clip(audio, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)

    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
        vstream.options = {"crf": str(crf), "preset": preset}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=int(sample_rate))
            astream.layout = "mono"
            astream.bit_rate = audio_bitrate
        for frame in frames:
            vframe = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(vstream.encode(vframe))
        container.mux(vstream.encode())  # flush the video encoder
        if astream is not None:
            chunk = astream.codec_context.frame_size or 1024
            for pts in range(0, len(audio), chunk):
                block = audio[pts:pts + chunk]
                aframe = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                aframe.sample_rate, aframe.pts = int(sample_rate), pts
                container.mux(astream.encode(aframe))
            container.mux(astream.encode())  # flush the audio encoder
    return path


# ------------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------------
class NoAudioError(ValueError):
    """The video file has no audio track (such clips cannot be used for audio-visual learning)."""


@dataclass
class VideoData:
    """What :func:`read_video` returns."""

    frames: np.ndarray  # [N, H, W, 3] uint8 RGB
    frame_times: np.ndarray  # [N] seconds from the file's start
    audio: Tensor | None  # [S] float32 mono at sample_rate; None if the file has no audio track
    sample_rate: int
    duration: float  # seconds of the window that was read (<= max_seconds)
    source: Path = field(default_factory=Path)


def _open(path: Path):
    """Open ``path`` with PyAV; a clear ``ValueError`` unless it holds moving pictures (cover art does not
    count: an MP3/M4A with an album cover is audio, not a one-picture video)."""
    import av

    from avlib.media import _NOT_MEDIA_FORMATS, real_video_streams

    if not path.is_file():
        raise FileNotFoundError(f"video file {path} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"video file {path} is empty (0 bytes); re-download or re-encode it.")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot open video file {path} ({type(e).__name__}: {e}); it is corrupt or not a "
                         "video format FFmpeg knows. Re-encode it, e.g. ffmpeg -i in.x -c:v libx264 "
                         "-c:a aac out.mp4.") from None
    if container.format is not None and container.format.name in _NOT_MEDIA_FORMATS:
        container.close()
        raise ValueError(f"video file {path} is not a video (its content looks like text); re-download it.")
    if not real_video_streams(container):
        art = " (only cover art: it is an audio file)" if container.streams.video else ""
        container.close()
        raise ValueError(f"video file {path} has no video stream{art}; extract_clip needs moving pictures "
                         "(for audio-only data write the WAV and datafile yourself; load_wav reads it).")
    return container


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # microseconds
    return None


def _square(img, size: int):
    """PIL image -> shorter side resized to ``size`` (bicubic) -> centre crop ``size x size``."""
    from PIL import Image

    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Turn ``[H, W, 3]`` counter-clockwise by ``degrees`` (rounded to a multiple of 90), as a player shows it."""
    k = round(degrees / 90) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def read_video(path: str | Path, num_frames: int | None = None, sample_rate: int = 16000, *,
               start: float = 0.0, max_seconds: float | None = None,
               frame_size: int | None = None) -> VideoData:
    """Decode ``[start, start + max_seconds)`` of a video file: frames, and mono audio at ``sample_rate``.

    ``num_frames`` picks that many frames nearest to evenly spaced times (the centres of ``num_frames`` equal
    segments of the window); None keeps every frame. ``frame_size`` resizes the kept frames (shorter side,
    bicubic) and centre-crops them square. Decoding stops at the end of the window, so long files are cheap to
    crop. The file is recognised by content (any container FFmpeg knows, whatever the extension).

    * Rotation: a display matrix (phone videos: "rotate 90") is honoured; frames come out upright, as a
      player shows them.
    * Cover art (an MP3/M4A's album picture) is not a video: such files raise ``ValueError``.
    * Audio: several tracks -> the first one that is not silent (:func:`avlib.audio.pick_track`, warns when
      it is not track 0); channels -> their mean, the same rule as :func:`avlib.audio.load_wav` (left channel
      with a warning if they cancel; :func:`avlib.audio.downmix`); resampled to ``sample_rate``. NaN/Inf
      samples raise ``ValueError``.
    """
    import av

    from avlib.media import real_video_streams

    path = Path(path)
    container = _open(path)
    try:
        vstream = real_video_streams(container)[0]
        vstream.thread_type = "AUTO"  # FFmpeg frame + slice threads
        astreams = list(container.streams.audio)
        vdur = _duration(container, vstream)
        if vdur is None and num_frames is not None:  # no metadata: one cheap pass for the length
            vdur = max((f.time or 0.0) for f in container.decode(vstream))
            container.seek(0)
        end = start + max_seconds if max_seconds is not None else float("inf")
        window = (min(end, vdur) if vdur is not None else end) - start
        if window <= 0:
            raise ValueError(f"video file {path}: start={start} s is past its end ({vdur} s); use an earlier "
                             "start.")
        targets = None
        if num_frames is not None:
            targets = start + (np.arange(num_frames) + 0.5) * window / num_frames  # [num_frames] seconds
            best: list = [None] * num_frames
            best_err = np.full(num_frames, np.inf)
        kept, times = [], []
        decoders = {s.index: A.TrackDecoder(sample_rate) for s in astreams}
        audio_open = set(decoders)  # streams still inside the window
        video_done = False
        for packet in container.demux(vstream, *astreams):
            for frame in packet.decode():
                t = frame.time if frame.time is not None else 0.0
                if isinstance(frame, av.AudioFrame):
                    if packet.stream.index not in audio_open:
                        continue
                    if t >= end:
                        audio_open.discard(packet.stream.index)
                        continue
                    decoders[packet.stream.index].add(frame)
                else:
                    if video_done:
                        continue
                    if t >= end:
                        video_done = True
                        continue
                    if t < start - 1e-6:
                        continue
                    if targets is None:
                        kept.append(frame)
                        times.append(t)
                    else:
                        err = np.abs(targets - t)
                        for i in np.nonzero(err < best_err)[0]:
                            best[i], best_err[i] = frame, err[i]
            if video_done and not audio_open:
                break
        tracks = []
        for d in decoders.values():
            wave = d.finish()  # [C, S] (flushed; cropped below)
            lead = round(((d.t0 or 0.0) - start) * sample_rate)  # samples before the first decoded one
            wave = np.pad(wave, ((0, 0), (lead, 0))) if lead > 0 else wave[:, -lead:]
            if max_seconds is not None:
                wave = wave[:, : round(max_seconds * sample_rate)]
            tracks.append(wave)
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode video file {path} ({type(e).__name__}: {e}); it is corrupt. "
                         "Re-encode it or drop it.") from None
    finally:
        container.close()
    if targets is not None:
        if any(f is None for f in best):
            raise ValueError(f"video file {path} has no decodable frames in [{start}, {end}) s.")
        kept, times = best, [float(f.time or 0.0) for f in best]
    if not kept:
        raise ValueError(f"video file {path} has no decodable frames in [{start}, {end}) s.")
    imgs = []
    for f in kept:
        img = _rotate(f.to_ndarray(format="rgb24"), getattr(f, "rotation", 0) or 0)  # [H, W, 3] upright
        if frame_size is not None:
            from PIL import Image

            img = np.asarray(_square(Image.fromarray(img), frame_size))
        imgs.append(img)
    audio = None
    if tracks:
        where = f"video file {path}"
        data = tracks[A.pick_track(tracks, where)]  # [C, S]
        A.check_finite(data, where)
        audio = torch.from_numpy(np.ascontiguousarray(A.downmix(data, where), dtype=np.float32))  # [S]
    return VideoData(frames=np.stack(imgs), frame_times=np.asarray(times), audio=audio,
                     sample_rate=sample_rate,
                     duration=float(window if np.isfinite(window) else (times[-1] - start if times else 0.0)),
                     source=path)


# ------------------------------------------------------------------------------------------------------------
# extraction into the dataset layout
# ------------------------------------------------------------------------------------------------------------
def extract_clip(video: str | Path, root: str | Path, *, video_id: str | None = None,
                 labels: Sequence[str] | str = (), clip_seconds: float | None = None,
                 frame_size: int | None = None,
                 sample_rate: int = 16000, start: float = 0.0, jpeg_quality: int = 90) -> Entry:
    """One video -> ``<root>/audio/<id>.wav`` (16 kHz mono PCM-16) + ``<root>/frames/frame_<i>/<id>.jpg``.

    The clip is ``[start, start + clip_seconds)`` (default: the profile's ``clip_seconds``): longer videos are
    cropped, shorter ones keep all their frames and get their audio zero-padded to ``clip_seconds``. The 10
    frames are evenly spaced over the clip and stored ``frame_size`` square (default: the profile's).
    Frames are upright (rotation flags honoured) and audio is mixed down as :func:`read_video` describes. If
    the mono mix peaks above 1.0 (e.g. a loud 5.1 track), the clip is scaled down to peak 1.0 with a warning
    (:func:`avlib.audio.limit_peak`) instead of being clipped in the 16-bit WAV.
    Returns the :class:`Entry` (not yet in a datafile; :func:`extract_videos` writes one).
    Raises :class:`NoAudioError` if the file has no audio track.
    """
    import soundfile as sf
    from PIL import Image

    prof = env.profile()
    clip_seconds = float(clip_seconds or prof.clip_seconds)
    frame_size = int(frame_size or prof.frame_size)
    video, root = Path(video), Path(root)
    vid = video_id or video.stem
    data = read_video(video, NUM_FRAMES, sample_rate, start=start, max_seconds=clip_seconds,
                      frame_size=frame_size)
    if data.audio is not None and data.audio.numel() == 0:
        raise NoAudioError(f"video file {video}: its audio track holds no samples in [{start}, "
                           f"{start + clip_seconds}) s; skip it or pick another start.")
    if data.audio is None:
        raise NoAudioError(f"video file {video} has no audio track; it cannot be used for audio-visual "
                           "learning. Skip it, or add a sound track (e.g. ffmpeg -i v.mp4 -i a.wav -c:v copy "
                           "out.mp4).")
    n = round(clip_seconds * sample_rate)
    wave = data.audio.numpy()
    wave = np.pad(wave, (0, n - len(wave))) if len(wave) < n else wave[:n]  # [n]
    wav_path = root / AUDIO_DIR / f"{vid}.wav"
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    wave = A.limit_peak(wave, f"video file {video}")  # peak > 1 (e.g. a 5.1 mix): scaled, with a warning
    sf.write(str(wav_path), np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16")
    frames_dir = root / FRAMES_DIR
    for i, img in enumerate(data.frames):
        p = frames_dir / f"frame_{i}" / f"{vid}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p, quality=jpeg_quality)
    if isinstance(labels, str):
        labels = labels.split(",")
    labels = tuple(m.strip() for m in labels if m.strip())
    return Entry(video_id=vid, wav=str(wav_path.resolve()), video_path=str(frames_dir.resolve()),
                 labels=labels)


@dataclass
class ExtractReport:
    """What :func:`extract_videos` did."""

    datafile: Path
    entries: list[Entry] = field(default_factory=list)
    no_audio: list[Path] = field(default_factory=list)  # skipped: no audio track
    failed: list[tuple[Path, str]] = field(default_factory=list)  # skipped: unreadable (path, reason)
    ignored: list[Path] = field(default_factory=list)  # files in the folder that are not videos

    def summary(self) -> str:
        ign = f"; ignored {len(self.ignored)} files that are not videos" if self.ignored else ""
        return (f"{len(self.entries)} clips written to {self.datafile}; skipped {len(self.no_audio)} without "
                f"audio "
                f"and {len(self.failed)} unreadable{ign}")

    def skipped(self) -> list[str]:
        """One line per skipped file: its path and the reason."""
        return [f"{p}: no audio track" for p in self.no_audio] + [f"{p}: {why}" for p, why in self.failed]


def _kind(p: Path) -> str | None:
    """:func:`avlib.media.probe`'s verdict, or None for an unreadable file."""
    from avlib.media import probe

    try:
        return probe(p)
    except (ValueError, OSError):
        return None


def list_videos(folder: str | Path, ignored: list[Path] | None = None) -> list[Path]:
    """The files directly in ``folder`` (sorted by name, hidden ones left out) that are videos.

    Recognised by content (:func:`avlib.media.probe`), so an ``.mkv`` named ``.bin`` counts and a WAV named
    ``.mp4`` does not. An unreadable file with a video extension (``VIDEO_EXTENSIONS``) is kept, so that it
    is reported as failed rather than forgotten. Other files are appended to ``ignored``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist.")
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        kind = _kind(p)
        if kind == "video" or (kind is None and p.suffix.lower() in VIDEO_EXTENSIONS):
            out.append(p)
        elif ignored is not None:
            ignored.append(p)
    return out


def extract_videos(videos: str | Path | Iterable[str | Path], root: str | Path, split: str = "custom", *,
                   labels: Mapping[str, str | Sequence[str]] | Callable[[Path], str | Sequence[str]]
                   | None = None,
                   clip_seconds: float | None = None, frame_size: int | None = None, sample_rate: int = 16000,
                   strict: bool = False, progress: bool = True) -> ExtractReport:
    """Extract many videos (a folder or a list of files) into ``root`` and append them to
    ``<root>/datafiles/<split>.json``.

    ``labels`` maps a video id (file stem) to its label mids (or is a function of the path); default: none.
    A folder is listed by content (:func:`list_videos`; other files are counted in ``report.ignored``).
    A video without an audio track is skipped, warned about and counted in ``report.no_audio``; one that
    fails for any other reason likewise in ``report.failed`` with the reason (``strict=True`` raises
    instead). One bad file never stops the batch; at the end the summary and the list of skipped files
    (path: reason) are printed. Video ids (file stems) must be unique.
    """
    from tqdm.auto import tqdm

    ignored: list[Path] = []
    paths = list_videos(videos, ignored) if isinstance(videos, str | Path) and Path(videos).is_dir() else \
        [Path(v) for v in ([videos] if isinstance(videos, str | Path) else videos)]
    stems = [p.stem for p in paths]
    dups = sorted({s for s in stems if stems.count(s) > 1})
    if dups:
        raise ValueError(f"extract_videos: several videos share the id(s) {', '.join(dups)} (file name "
                         "without "
                         "extension); rename them so every id is unique.")
    root = Path(root)
    report = ExtractReport(datafile=root / DATAFILES_DIR / f"{split}.json", ignored=ignored)
    for p in tqdm(paths, desc=f"extract {split}", disable=not progress):
        lab = labels(p) if callable(labels) else (labels or {}).get(p.stem, ())
        try:
            report.entries.append(extract_clip(p, root, labels=lab, clip_seconds=clip_seconds,
                                               frame_size=frame_size, sample_rate=sample_rate))
        except NoAudioError as e:
            if strict:
                raise
            warnings.warn(f"skipped: {e}", stacklevel=2)
            report.no_audio.append(p)
        except Exception as e:  # noqa: BLE001 - one bad file must not lose the batch
            if strict:
                raise
            reason = str(e) if isinstance(e, ValueError | FileNotFoundError) else f"{type(e).__name__}: {e}"
            warnings.warn(f"skipped: {reason}", stacklevel=2)
            report.failed.append((p, reason))
    if report.entries:
        write_datafile(report.datafile, report.entries, append=True)
    skipped = report.skipped()
    if skipped:
        print(report.summary() + ". Skipped files:\n" + "\n".join(f"  {line}" for line in skipped))
    return report
