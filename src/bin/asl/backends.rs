//! Choosing a backend (`--backend`), and the float64 reference wrapped as one.

use asymloss::tensor::{check_multi, check_single};
use asymloss::{
    available_backends, reference, Backend, BackendKind, GradMut, LossValue, MultiInputs,
    MultiLabel, Pass, SingleInputs, SingleLabel,
};
use clap::ValueEnum;

use crate::fail::{usage, Failure};

/// The `--backend` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Choice {
    /// The best available: a hardware GPU (CUDA, then wgpu), else the fast CPU path.
    Auto,
    /// The fast fused CPU path (threads and SIMD).
    Cpu,
    /// WGSL kernels through wgpu (a GPU, or a software adapter such as lavapipe).
    Wgpu,
    /// CUDA C kernels compiled by NVRTC.
    Cuda,
    /// The float64 reference (slow; for checking).
    Reference,
}

/// A created backend with its kind (`None` for the reference).
pub struct Picked {
    /// `cpu`, `wgpu`, `cuda`, or `None` for the reference.
    pub kind: Option<BackendKind>,
    /// The backend.
    pub backend: Box<dyn Backend>,
}

impl Picked {
    /// The name to print (`cpu`, `wgpu (NVIDIA H200)`, `reference (f64)`).
    pub fn name(&self) -> String {
        self.backend.name()
    }
}

/// Creates the backend `choice` names.
pub fn pick(choice: Choice) -> Result<Picked, Failure> {
    let kind = match choice {
        Choice::Reference => {
            return Ok(Picked {
                kind: None,
                backend: Box::new(Reference),
            })
        }
        Choice::Cpu => BackendKind::Cpu,
        Choice::Wgpu => BackendKind::Wgpu,
        Choice::Cuda => BackendKind::Cuda,
        Choice::Auto => {
            let (mut ok, missing) = available_backends();
            for (k, why) in &missing {
                log::info!("backend {} unavailable: {why}", k.name());
            }
            if ok.is_empty() {
                return Err(usage("no backend is available"));
            }
            let (kind, backend) = ok.remove(0);
            log::info!("--backend auto chose {}", backend.name());
            return Ok(Picked {
                kind: Some(kind),
                backend,
            });
        }
    };
    let backend = kind
        .create()
        .map_err(|e| usage(format!("backend {} is not available: {e}", kind.name())))?;
    log::info!("using backend {}", backend.name());
    Ok(Picked {
        kind: Some(kind),
        backend,
    })
}

/// Every backend available here, best first, logging why the others are not.
pub fn all() -> (Vec<Picked>, Vec<(BackendKind, String)>) {
    let (ok, missing) = available_backends();
    for (k, why) in &missing {
        log::info!("backend {} unavailable: {why}", k.name());
    }
    (
        ok.into_iter()
            .map(|(k, b)| Picked {
                kind: Some(k),
                backend: b,
            })
            .collect(),
        missing,
    )
}

/// The float64 reference ([`asymloss::reference`]) behind the [`Backend`] trait: it computes in
/// f64 and rounds the loss to f32 and the gradient to the logits' type.
#[derive(Debug)]
pub struct Reference;

fn store(grad: GradMut<'_>, g: &[f64]) {
    match grad {
        GradMut::F32(out) => out.iter_mut().zip(g).for_each(|(o, &v)| *o = v as f32),
        GradMut::F16(out) => out
            .iter_mut()
            .zip(g)
            .for_each(|(o, &v)| *o = half::f16::from_f64(v)),
        GradMut::Bf16(out) => out
            .iter_mut()
            .zip(g)
            .for_each(|(o, &v)| *o = half::bf16::from_f64(v)),
    }
}

fn loss_value(loss: &[f64], unreduced: bool) -> LossValue {
    if unreduced {
        LossValue::Array(loss.iter().map(|&v| v as f32).collect())
    } else {
        LossValue::Scalar(loss[0] as f32)
    }
}

impl Backend for Reference {
    fn name(&self) -> String {
        "reference (f64)".into()
    }

    fn multi_label(
        &self,
        cfg: &MultiLabel,
        pass: Pass,
        inputs: &MultiInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> asymloss::Result<Option<LossValue>> {
        check_multi(cfg, pass, inputs, &grad)?;
        let out = reference::multi_label(
            cfg,
            inputs.shape,
            inputs.logits,
            inputs.targets,
            inputs.upstream,
        )?;
        if let (true, Some(g)) = (pass.wants_grad(), grad) {
            store(g, &out.grad);
        }
        let unreduced = cfg.reduction == asymloss::Reduction::None;
        Ok(pass.wants_loss().then(|| loss_value(&out.loss, unreduced)))
    }

    fn single_label(
        &self,
        cfg: &SingleLabel,
        pass: Pass,
        inputs: &SingleInputs<'_>,
        grad: Option<GradMut<'_>>,
    ) -> asymloss::Result<Option<LossValue>> {
        check_single(cfg, pass, inputs, &grad)?;
        let out = reference::single_label(
            cfg,
            inputs.shape,
            inputs.logits,
            inputs.targets,
            inputs.upstream,
        )?;
        if let (true, Some(g)) = (pass.wants_grad(), grad) {
            store(g, &out.grad);
        }
        let unreduced = cfg.reduction == asymloss::Reduction::None;
        Ok(pass.wants_loss().then(|| loss_value(&out.loss, unreduced)))
    }
}
