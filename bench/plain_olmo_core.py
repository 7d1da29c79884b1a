"""The baseline for bench/overhead.py: one training run written directly against olmo-core.

No olmotrain imports: the model factory, optimizer, WSD-S scheduler, data set/loader, checkpoint
policy and held-out evaluator are olmo-core's, with every value given on the command line
(bench/overhead.py passes the values olmotrain's plan chose for the same workload).

    python bench/plain_olmo_core.py --out /tmp/plain --steps 40 --train 'data/.../train-*.npy'
"""

from __future__ import annotations

import argparse
import glob
import logging
import os

CONSOLE_METRICS = ["train/CE loss", "optim/LR*", "throughput/device/TPS", "eval/lm/*/CE loss"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="save folder; its work/ subdir is the work dir")
    p.add_argument("--factory", default="olmo2_14M", help="TransformerConfig factory")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--eos", type=int, default=0)
    p.add_argument("--pad", type=int, default=1)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch-tokens", type=int, default=8192)
    p.add_argument("--micro-batch-tokens", type=int, default=8192)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.99))
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--warmup-tokens", type=int, default=16384)
    p.add_argument("--period-lengths", type=int, nargs="+", help="WSDS periods (tokens)")
    p.add_argument("--decay-fraction", type=float, default=0.1)
    p.add_argument("--fixed-steps", type=int, nargs="*", default=[], help="permanent ckpts")
    p.add_argument("--ephemeral-interval", type=int, default=250)
    p.add_argument("--train", nargs="+", required=True, help="token files or globs")
    p.add_argument("--eval", nargs="*", default=[], metavar="LABEL=GLOB", help="held-out files")
    p.add_argument("--num-workers", type=int, default=0)
    # The generic factory (olmotrain's `factory: olmo2`, e.g. DataDecide's sizes) needs the shape.
    p.add_argument("--d-model", type=int, default=None)
    p.add_argument("--n-layers", type=int, default=None)
    p.add_argument("--n-heads", type=int, default=None)
    p.add_argument("--ffn-hidden", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument(
        "--fsdp", action="store_true", help="FSDP, bf16 parameters, fp32 reduction (no autocast)"
    )
    return p.parse_args()


def files(patterns: list[str]) -> list[str]:
    return [f for p in patterns for f in sorted(glob.glob(p))]


def main() -> None:
    args = parse_args()
    import torch
    from olmo_core.config import DType
    from olmo_core.data import (
        NumpyDataLoaderConfig,
        NumpyFSLDatasetConfig,
        NumpyPaddedFSLDatasetConfig,
        TokenizerConfig,
    )
    from olmo_core.distributed.parallel import DataParallelType
    from olmo_core.nn.transformer import TransformerConfig
    from olmo_core.optim import WSDS, OptimGroupOverride, SchedulerUnits, SkipStepAdamWConfig
    from olmo_core.train import (
        Duration,
        TrainerConfig,
        prepare_training_environment,
        teardown_training_environment,
    )
    from olmo_core.train.callbacks import (
        CheckpointerCallback,
        ConfigSaverCallback,
        ConsoleLoggerCallback,
        GPUMemoryMonitorCallback,
        LMEvaluatorCallbackConfig,
    )
    from olmo_core.train.train_module import (
        TransformerDataParallelConfig,
        TransformerTrainModuleConfig,
    )

    cuda = torch.cuda.is_available()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    # Same console output as olmotrain: no dump of the module tree.
    logging.getLogger("olmo_core.nn.transformer.config").setLevel(logging.WARNING)
    prepare_training_environment(seed=args.seed, backend="cpu:gloo,cuda:nccl" if cuda else "gloo")
    try:
        work_dir = os.path.join(args.out, "work")
        tokenizer = TokenizerConfig(
            vocab_size=args.vocab_size, eos_token_id=args.eos, pad_token_id=args.pad
        )
        shape = {}
        if args.factory == "olmo2":
            from olmo_core.nn.feed_forward import FeedForwardConfig

            shape = dict(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
            if args.ffn_hidden:
                shape["feed_forward"] = FeedForwardConfig(hidden_size=args.ffn_hidden, bias=False)
        model_config = getattr(TransformerConfig, args.factory)(
            vocab_size=tokenizer.padded_vocab_size(), **shape
        )
        model_config.init_seed = args.seed
        model = model_config.build(init_device="meta")
        train_module = TransformerTrainModuleConfig(
            rank_microbatch_size=args.micro_batch_tokens,
            max_sequence_length=args.seq,
            optim=SkipStepAdamWConfig(
                lr=args.lr,
                betas=tuple(args.betas),
                weight_decay=args.weight_decay,
                group_overrides=[
                    OptimGroupOverride(params=["embeddings.weight"], opts=dict(weight_decay=0.0))
                ],
            ),
            scheduler=WSDS(
                units=SchedulerUnits.tokens,
                warmup=args.warmup_tokens,
                period_lengths=args.period_lengths or [args.steps * args.batch_tokens],
                decay_fraction=args.decay_fraction,
            ),
            max_grad_norm=args.max_grad_norm,
            compile_model=args.compile,
            dp_config=TransformerDataParallelConfig(
                name=DataParallelType.fsdp, param_dtype=DType.bfloat16, reduce_dtype=DType.float32
            )
            if args.fsdp
            else None,
            autocast_precision=DType.bfloat16 if cuda and not args.fsdp else None,
        ).build(model, device=torch.device("cuda" if cuda else "cpu"))

        dataset = NumpyFSLDatasetConfig(
            paths=files(args.train),
            sequence_length=args.seq,
            tokenizer=tokenizer,
            work_dir=work_dir,
        ).build()
        data_loader = NumpyDataLoaderConfig(
            global_batch_size=args.batch_tokens,
            seed=args.seed,
            num_workers=args.num_workers,
            work_dir=work_dir,
        ).build(dataset, dp_process_group=train_module.dp_process_group)

        trainer_config = (
            TrainerConfig(
                save_folder=args.out,
                work_dir=work_dir,
                max_duration=Duration.steps(args.steps),
                metrics_collect_interval=1,
                cancel_check_interval=1,
            )
            .with_callback(
                "checkpointer",
                CheckpointerCallback(
                    save_interval=None,
                    fixed_steps=args.fixed_steps,
                    max_checkpoints=None,
                    ephemeral_save_interval=args.ephemeral_interval,
                    save_async=False,
                ),
            )
            .with_callback(
                "console_logger",
                ConsoleLoggerCallback(log_interval=1, metrics=CONSOLE_METRICS),
            )
            .with_callback("config_saver", ConfigSaverCallback())
        )
        evals = [(e.partition("=")[0], f) for e in args.eval for f in files([e.partition("=")[2]])]
        if evals:
            trainer_config = trainer_config.with_callback(
                "lm_evaluator",
                LMEvaluatorCallbackConfig(
                    eval_dataset=NumpyPaddedFSLDatasetConfig(
                        paths=[f for _, f in evals],
                        metadata=[{"label": label} for label, _ in evals],
                        sequence_length=args.seq,
                        tokenizer=tokenizer,
                        work_dir=work_dir,
                    ),
                    eval_interval=None,
                    eval_on_finish=True,
                ),
            )
        if cuda:
            trainer_config = trainer_config.with_callback("gpu_monitor", GPUMemoryMonitorCallback())

        trainer = trainer_config.build(train_module, data_loader)
        trainer.callbacks["config_saver"].config = vars(args)  # type: ignore[attr-defined]
        trainer.maybe_load_checkpoint()
        trainer.fit()
    finally:
        teardown_training_environment()


if __name__ == "__main__":
    main()
