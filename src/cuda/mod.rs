//! The CUDA backend (placeholder while it is written).
use crate::error::{Error, Result};

/// The CUDA backend on host slices.
#[derive(Debug)]
pub struct CudaBackend;

impl CudaBackend {
    /// Opens CUDA device `ordinal`.
    pub fn new(_ordinal: usize) -> Result<Self> {
        Err(Error::Unsupported("CUDA backend not written yet".into()))
    }
}

impl crate::Backend for CudaBackend {
    fn name(&self) -> String {
        "cuda".into()
    }
    fn multi_label(
        &self,
        _: &crate::MultiLabel,
        _: crate::Pass,
        _: &crate::MultiInputs<'_>,
        _: Option<crate::GradMut<'_>>,
    ) -> Result<Option<crate::LossValue>> {
        unimplemented!()
    }
    fn single_label(
        &self,
        _: &crate::SingleLabel,
        _: crate::Pass,
        _: &crate::SingleInputs<'_>,
        _: Option<crate::GradMut<'_>>,
    ) -> Result<Option<crate::LossValue>> {
        unimplemented!()
    }
}
