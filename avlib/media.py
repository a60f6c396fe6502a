"""What a file holds, judged by its content (never by its name): an image, a sound, or a video.

::

    probe("clip.m4a")      # -> "audio"   (AAC in an MP4 container, whatever the extension says)
    probe("song.mp3")      # -> "audio"   (also with embedded cover art: the album cover is not a video)
    probe("frame.png")     # -> "image"
    probe("phone.mov")     # -> "video"

Images are recognised by Pillow (JPEG, PNG, GIF, BMP, WebP, TIFF, PPM, AVIF); everything else is opened with the
FFmpeg that PyAV bundles. A file with a *real* video stream is a video; a video stream that is only cover art
(FFmpeg's ``attached_pic`` disposition, as in MP3/M4A/FLAC files) does not count. A file with audio streams
and no real video stream is audio. Anything else raises ``ValueError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("audio", "video", "image")
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "AVIF")  # Pillow format names
# FFmpeg demuxers that accept almost any bytes (text shown as "ANSI art" video); never media for avlib.
_NOT_MEDIA_FORMATS = {"tty"}


def is_cover_art(stream) -> bool:
    """True for a PyAV video stream that is a still picture attached to audio (album cover)."""
    import av

    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


def real_video_streams(container) -> list:
    """The video streams of an open PyAV container that hold moving pictures (cover art left out)."""
    return [s for s in container.streams.video if not is_cover_art(s)]


def is_image(path: str | Path) -> bool:
    """True if Pillow recognises the file's content as an image (it reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    Image.init()  # register every plugin, so that ``formats`` can name them
    try:
        with Image.open(path, formats=IMAGE_FORMATS):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False
    except Image.DecompressionBombError:
        return True  # an image, too large to decode; load_frame explains


def probe(path: str | Path) -> str:
    """``"image"``, ``"video"`` or ``"audio"`` for the file's content (see the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an empty one or one
    that holds no image, video or audio stream.
    """
    import av

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass the files in it (python -m avlib predict accepts folders).")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is an empty file (0 bytes); re-download or re-export it.")
    if is_image(path):
        return "image"
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not an audio, video or image file that avlib can read ({type(e).__name__}:"
                         f" {e}); give a sound (WAV, FLAC, MP3, OGG/Opus, M4A, ...), a video or an image "
                         "(JPEG, PNG, ...).") from None
    with container:
        name = container.format.name if container.format is not None else ""
        if name in _NOT_MEDIA_FORMATS:
            raise ValueError(f"{path} is not an audio, video or image file (its content looks like text); "
                             "give a sound, a video or an image.")
        if real_video_streams(container):
            return "video"
        if container.streams.audio:
            return "audio"
        extra = " (only cover art)" if container.streams.video else ""
        raise ValueError(f"{path} holds no audio or video stream{extra}; give a sound, a video or an image.")
