//! QR codes for payment payloads (an EPC credit transfer, a pagoPA notice), as SVG for a
//! page and PNG for an email or a printed notice.
//!
//! Encoding is the `qrcode` crate's, at error correction level M, which both the EPC
//! guidelines and pagoPA's notice specification require.

use std::io::Cursor;

use image::Luma;
use qrcode::{EcLevel, QrCode};

/// Why a payload could not become a QR code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QrError {
    /// The payload does not fit in a QR code of the largest version allowed.
    #[error(
        "the payload of {bytes} bytes does not fit in a QR code of version {max_version} or lower"
    )]
    TooLong {
        /// The payload's length.
        bytes: usize,
        /// The largest version allowed.
        max_version: i16,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

/// A QR code of a payload, ready to render.
#[derive(Clone)]
pub struct PaymentQr {
    code: QrCode,
}

impl std::fmt::Debug for PaymentQr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentQr")
            .field("version", &self.code.version())
            .field("width", &self.code.width())
            .finish()
    }
}

impl PaymentQr {
    /// Encodes `payload` at error correction level M in the smallest version that holds
    /// it, refusing a version above `max_version` (the EPC guidelines allow up to 13).
    pub fn new(payload: &str, max_version: i16) -> Result<Self, QrError> {
        let too_long = || QrError::TooLong {
            bytes: payload.len(),
            max_version,
        };
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M)
            .map_err(|_| too_long())?;
        match code.version() {
            qrcode::Version::Normal(v) if v <= max_version => Ok(PaymentQr { code }),
            _ => Err(too_long()),
        }
    }

    /// Encodes `payload` at error correction level M in exactly `version` (1 to 40), as a
    /// layout that fixes the symbol's size asks (pagoPA's notice: version 4, 33×33
    /// modules); refused when it does not fit.
    pub fn with_version(payload: &str, version: i16) -> Result<Self, QrError> {
        let code = QrCode::with_version(
            payload.as_bytes(),
            qrcode::Version::Normal(version),
            EcLevel::M,
        )
        .map_err(|_| QrError::TooLong {
            bytes: payload.len(),
            max_version: version,
        })?;
        Ok(PaymentQr { code })
    }

    /// The QR version chosen (1 to 40).
    pub fn version(&self) -> i16 {
        match self.code.version() {
            qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
        }
    }

    /// The code as an SVG document, at least `size` pixels wide, with its quiet zone.
    pub fn svg(&self, size: u32) -> String {
        self.code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(size, size)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build()
    }

    /// The code as a PNG image, at least `size` pixels wide, with its quiet zone.
    pub fn png(&self, size: u32) -> Result<Vec<u8>, QrError> {
        let image = self
            .code
            .render::<Luma<u8>>()
            .min_dimensions(size, size)
            .build();
        let mut out = Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(|e| QrError::Png(e.to_string()))?;
        Ok(out.into_inner())
    }
}
