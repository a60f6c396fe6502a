"""The course's table of contents: one source for titles, runtimes, paper sections and avlib modules.

Notebook headers (the first cell of every ``solutions/NN_*.ipynb``, tagged ``course-header``) and the notebook
table of the README are generated from :data:`NOTEBOOKS` (``python .ci/notebooks.py headers`` / ``readme``), and
``tests/test_notebooks.py`` keeps them equal, so a runtime is changed here and nowhere else.

Runtimes are wall-clock times measured on a 2-core CPU in the ``course`` profile (upper bounds: the machine was
often busy) and, for the GPU column, runs of the same code on one H100.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Paper", "Notebook", "PAPERS", "NOTEBOOKS", "notebook", "header_markdown", "readme_table",
           "HEADER_TAG", "README_BEGIN", "README_END"]

HEADER_TAG = "course-header"  # cell tag of the generated header cell
README_BEGIN = "<!-- notebooks-table: generated from avlib/course.py by `python .ci/notebooks.py readme` -->"
README_END = "<!-- /notebooks-table -->"


@dataclass(frozen=True)
class Paper:
    """A paper the course cites: short name, arXiv id, full reference."""

    short: str
    arxiv: str
    reference: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


PAPERS: dict[str, Paper] = {
    "cavmae": Paper("CAV-MAE", "2210.07839", "Gong et al., Contrastive Audio-Visual Masked Autoencoder, ICLR 2023"),
    "mae": Paper("MAE", "2111.06377", "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022"),
    "audiomae": Paper("AudioMAE", "2207.06405", "Huang et al., Masked Autoencoders that Listen, NeurIPS 2022"),
    "ast": Paper("AST", "2104.01778", "Gong et al., AST: Audio Spectrogram Transformer, Interspeech 2021"),
    "vit": Paper("ViT", "2010.11929", "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021"),
    "attention": Paper("Transformer", "1706.03762", "Vaswani et al., Attention Is All You Need, NeurIPS 2017"),
    "cpc": Paper("InfoNCE (CPC)", "1807.03748", "van den Oord et al., Representation Learning with Contrastive "
                 "Predictive Coding, 2018"),
    "clip": Paper("CLIP", "2103.00020", "Radford et al., Learning Transferable Visual Models From Natural Language "
                  "Supervision, ICML 2021"),
}


@dataclass(frozen=True)
class Notebook:
    """One notebook of the course."""

    number: str  # "04"
    slug: str  # file stem: "04_patch_embedding"
    title: str  # the notebook's H1 (after "NN · ")
    short: str  # title in the README table and the navigation links
    builds: str  # "what you build" (README)
    cpu: str  # runtime on a 2-core CPU, course profile
    gpu: str  # runtime on one GPU
    papers: tuple[tuple[str, str], ...] = ()  # (key of PAPERS, section and topic)
    modules: tuple[str, ...] = ()  # avlib modules it builds or uses, as paths under avlib/

    @property
    def file(self) -> str:
        return f"{self.slug}.ipynb"


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("00", "00_setup", "Setup: the course, your machine, and the profiles", "Setup",
             "environment check, devices, profiles, spectrogram length", "< 15 s", "< 15 s",
             (("cavmae", "§1 (introduction)"), ("ast", "§2 (the fbank front-end)")),
             ("env.py", "checks/__init__.py")),
    Notebook("01", "01_orchestra", "The orchestra: our audio-visual data", "The orchestra: our audio-visual data",
             "the dataset, datafiles, two baselines", "≈ 1 min (+ 2–3 min to generate the dataset once)", "≈ 1 min",
             (("cavmae", "§2.1.1 (10-s clips, 10 frames per clip)"),),
             ("data/orchestra.py", "data/datafile.py", "data/report.py", "checks/data.py")),
    Notebook("02", "02_log_mel", "From waveform to log-mel", "From waveform to log-mel",
             "framing, mel filterbank, `kaldi.fbank`, normalisation, pad/crop", "≈ 30 s", "≈ 30 s",
             (("cavmae", "§2.1.1 (128-bin fbank, 25-ms window, 10-ms hop)"), ("ast", "§2.1 (input spectrogram)")),
             ("audio.py", "checks/audio.py")),
    Notebook("03", "03_frames", "From video to frames", "From video to frames",
             "frame sampling, transforms, augmentation, PyAV", "≈ 20 s", "≈ 20 s",
             (("cavmae", "§2.1.1 (frame aggregation: 10 frames, one per step)"),),
             ("vision.py", "data/video.py", "checks/vision.py")),
    Notebook("04", "04_patch_embedding", "Patch embedding: from pixels and spectrograms to tokens", "Patch embedding",
             "patchify, Conv2d = Linear, 2-D sin-cos positions, modality embeddings", "≈ 20 s", "≈ 20 s",
             (("cavmae", "§2.1.1 and §2.2 (tokenization, modality and positional embeddings)"),
              ("vit", "§3.1 (patch embedding)"), ("mae", "§3 (sin-cos positions)")),
             ("patching.py", "pos_embed.py", "checks/patching.py")),
    Notebook("05", "05_masking", "Masking: hide 75 % and make the model guess", "Masking",
             "random and structured masking, `ids_restore`, why 75 %", "≈ 25 s", "≈ 25 s",
             (("mae", "§3 (random sampling) and §4.1 (masking ratio)"), ("audiomae", "§3 (masking strategies)"),
              ("cavmae", "§2.3 (75 % per modality)")),
             ("masking.py", "checks/masking.py")),
    Notebook("06", "06_attention", "Attention and the modality-aware block", "Attention and the modality-aware block",
             "attention from scratch = SDPA = timm, three LayerNorm sets", "≈ 30 s", "≈ 30 s",
             (("attention", "§3.2 (scaled dot-product and multi-head attention)"),
              ("cavmae", "§2.1.2 (the block) and §2.3 (one LayerNorm set per stream)")),
             ("blocks.py", "checks/attention.py")),
    Notebook("07", "07_single_modality_mae", "A masked autoencoder for one modality",
             "A masked autoencoder for one modality",
             "encoder, decoder with mask tokens, masked loss; trains an audio MAE", "≈ 2 min", "< 1 min",
             (("mae", "§3 (encoder, decoder, reconstruction target)"), ("audiomae", "§3 (spectrogram MAE)"),
              ("cavmae", "§2.1.4 (single-modality MAE)")),
             ("models/mae.py", "losses.py", "curves.py", "checks/mae.py")),
    Notebook("08", "08_contrastive", "Audio ↔ video contrastive learning", "Audio ↔ video contrastive learning",
             "embeddings, similarity / τ, InfoNCE (one direction, then symmetric), contrastive accuracy, retrieval "
             "strip", "≈ 5 min", "< 1 min",
             (("cavmae", "§2.1.3 (contrastive audio-visual learning) and §2.3 (Eq. for L_c)"),
              ("cpc", "§2.3 (InfoNCE)"), ("clip", "§2.3 (symmetric contrastive loss)")),
             ("losses.py", "checks/contrastive.py", "plots.py", "curves.py")),
    Notebook("09", "09_cavmae", "Assembling CAV-MAE", "Assembling CAV-MAE",
             "modality stacks + shared layer + joint decoder + both losses, parameter table, `base` = the paper",
             "≈ 20 s", "< 30 s",
             (("cavmae", "§2.2 (AV-MAE) and §2.3 (CAV-MAE, Figure 1)"),),
             ("models/cavmae.py", "models/config.py", "checks/cavmae.py")),
    Notebook("10", "10_pretraining", "Pretraining", "Pretraining",
             "AdamW, warm-up + cosine, clipping, loss weights, bf16, checkpoint + resume; curves and inpainting at "
             "start / middle / end", "< 1 min after `make run`, else ≈ 6 min", "≈ 2 min",
             (("cavmae", "§2.3 (L = L_r + λ_c · L_c)"), ("mae", "appendix A.1 (pretraining recipe)")),
             ("train/pretraining.py", "train/optim.py", "train/loop.py", "blocks.py", "curves.py", "experiments.py",
              "checks/pretraining.py")),
    Notebook("11", "11_what_did_it_learn", "What did it learn?", "What did it learn?",
             "recall@k, retrieval both ways, inpainting vs mask ratio, linear probes, embeddings, attention; "
             "pretrained vs random init", "≈ 3 min after `make run`", "< 1 min",
             (("cavmae", "§3 (retrieval and inpainting)"), ("mae", "§4.3 (linear probing)")),
             ("evaluate.py", "metrics.py", "plots.py", "influence.py", "checks/retrieval.py")),
    Notebook("12", "12_finetuning", "Fine-tuning for instrument recognition", "Fine-tuning for instrument recognition",
             "CAVMAEFT, the course's recipe (head lr; the reference's SpecAugment, mixup and weight averaging, off "
             "in its short runs), linear probe vs full, AV / A / V, label efficiency",
             "≈ 3.5 min after `make run`, else ≈ 25 min", "≈ 1 min after `make run`",
             (("cavmae", "§3 (fine-tuning for event classification)"), ("mae", "§4.3 (fine-tuning vs linear probe)")),
             ("models/cavmae.py", "train/finetuning.py", "experiments.py", "results.py", "metrics.py",
              "checks/finetuning.py")),
    Notebook("13", "13_evaluation", "Evaluation and ablations", "Evaluation and ablations",
             "accuracy, macro-F1, confusion matrix, modality ablation incl. missing modality, 10-frame aggregation, "
             "mistakes", "≈ 4.5 min after `make run`", "< 1 min",
             (("cavmae", "§3 (audio-visual event classification, single-modality results)"),),
             ("evaluate.py", "metrics.py", "results.py", "checks/evaluation.py")),
    Notebook("14", "14_capstone", "Capstone: your own videos, the official weights, and scaling out", "Capstone",
             "your own videos → predict, official CAV-MAE checkpoints through `avlib.convert`, `torchrun` (DDP), "
             "throughput", "≈ 2 min after `make run` (else ≈ 11 min more to train first)", "< 1 min",
             (("cavmae", "§2.1.1 (frame aggregation at inference)"),),
             ("predict.py", "convert.py", "distributed.py", "bench.py", "shared_cores.py", "checks/capstone.py")),
)


def notebook(key: str) -> Notebook:
    """The notebook whose number (``"04"``), slug or file name is ``key``."""
    for nb in NOTEBOOKS:
        if key in (nb.number, nb.slug, nb.file):
            return nb
    raise KeyError(f"no notebook {key!r}; numbers are {', '.join(n.number for n in NOTEBOOKS)}")


def _link(nb: Notebook, arrow: str) -> str:
    text = f"← {nb.number} · {nb.short}" if arrow == "prev" else f"{nb.number} · {nb.short} →"
    return f"[{text}]({nb.file})"  # same folder: resolves in both solutions/ and notebooks/


def header_markdown(key: str) -> str:
    """The generated first cell of a notebook: title, previous/next links, runtime, papers, avlib modules."""
    nb = notebook(key)
    i = NOTEBOOKS.index(nb)
    nav = []
    if i > 0:
        nav.append(_link(NOTEBOOKS[i - 1], "prev"))
    nav.append("[course overview](../README.md#the-notebooks)")
    if i + 1 < len(NOTEBOOKS):
        nav.append(_link(NOTEBOOKS[i + 1], "next"))
    papers = "; ".join(f"{PAPERS[k].short} {where} ([arXiv {PAPERS[k].arxiv}]({PAPERS[k].url}))"
                       for k, where in nb.papers)
    modules = ", ".join(f"[`avlib/{m}`](../avlib/{m})" for m in nb.modules)
    return "\n".join([
        f"# {nb.number} · {nb.title}",
        "",
        " · ".join(nav),
        "",
        f"**Runtime:** CPU {nb.cpu} (`course` profile, 2 cores) · GPU {nb.gpu}  ",
        f"**Papers:** {papers}  ",
        f"**avlib:** {modules}",
    ])


def readme_table() -> str:
    """The README's notebook table (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = ["| # | notebook | what you build | CPU (`course`) | GPU |", "|---|---|---|---|---|"]
    rows += [f"| {nb.number} | [{nb.short}](solutions/{nb.file}) | {nb.builds} | {nb.cpu} | {nb.gpu} |"
             for nb in NOTEBOOKS]
    return "\n".join(rows)
