//! The fast fused CPU path (placeholder while it is written).
use crate::backend::Backend;
use crate::config::{MultiLabel, SingleLabel};
use crate::error::Result;
use crate::tensor::{GradMut, LossValue, MultiInputs, Pass, SingleInputs};

/// The fast CPU backend.
#[derive(Debug, Default)]
pub struct Cpu;

impl Cpu {
    /// A CPU backend on rayon's global pool.
    pub fn new() -> Self {
        Cpu
    }
}

impl Backend for Cpu {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn multi_label(
        &self,
        _cfg: &MultiLabel,
        _pass: Pass,
        _inputs: &MultiInputs<'_>,
        _grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        todo!()
    }
    fn single_label(
        &self,
        _cfg: &SingleLabel,
        _pass: Pass,
        _inputs: &SingleInputs<'_>,
        _grad: Option<GradMut<'_>>,
    ) -> Result<Option<LossValue>> {
        todo!()
    }
}
