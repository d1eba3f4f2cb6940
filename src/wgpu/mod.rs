//! The wgpu backend (placeholder while it is written).
use crate::error::{Error, Result};

/// The wgpu backend on host slices.
#[derive(Debug)]
pub struct WgpuBackend;

impl WgpuBackend {
    /// Picks an adapter and creates a device.
    pub fn new() -> Result<Self> {
        Err(Error::Unsupported("wgpu backend not written yet".into()))
    }
}

impl crate::Backend for WgpuBackend {
    fn name(&self) -> String {
        "wgpu".into()
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
