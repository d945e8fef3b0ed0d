//! [`Figure`]: a rendered picture that shows inline in a notebook and saves as PNG.

use std::path::Path;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

/// A rendered figure (RGB pixels, encoded as PNG once).
#[derive(Clone)]
pub struct Figure {
    png: Vec<u8>,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Figure({}x{} PNG, {} bytes)",
            self.width,
            self.height,
            self.png.len()
        )
    }
}

/// Registers the embedded DejaVu Sans font with plotters once: figures never depend on the
/// fonts a machine happens to have.
pub(crate) fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            plotters::style::register_font("sans-serif", style, bytes)
                .unwrap_or_else(|_| panic!("the embedded DejaVu font is valid"));
        }
    });
}

impl Figure {
    /// Wraps RGB pixels.
    ///
    /// ```
    /// let fig = fastvision::show::Figure::from_rgb(image::RgbImage::new(4, 3));
    /// assert_eq!(fig.size(), (4, 3));
    /// ```
    pub fn from_rgb(img: RgbImage) -> Self {
        let (width, height) = img.dimensions();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("PNG encoding to memory cannot fail");
        Figure { png, width, height }
    }

    /// Draws a `width` x `height` figure with plotters on a white background.
    ///
    /// ```
    /// use plotters::prelude::*;
    /// let fig = fastvision::show::Figure::draw(200, 100, |root| {
    ///     root.draw(&Circle::new((50, 50), 20, RED.filled()))?;
    ///     Ok(())
    /// }).unwrap();
    /// assert_eq!(fig.size(), (200, 100));
    /// ```
    pub fn draw(
        width: u32,
        height: u32,
        paint: impl FnOnce(
            &DrawingArea<BitMapBackend<'_>, Shift>,
        ) -> std::result::Result<(), Box<dyn std::error::Error>>,
    ) -> Result<Self> {
        ensure_font();
        let mut buf = vec![255u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE)
                .map_err(|e| Error::InvalidArgument(format!("drawing failed: {e}")))?;
            paint(&root).map_err(|e| Error::InvalidArgument(format!("drawing failed: {e}")))?;
            root.present()
                .map_err(|e| Error::InvalidArgument(format!("drawing failed: {e}")))?;
        }
        let img = RgbImage::from_raw(width, height, buf).expect("buffer matches the size");
        Ok(Self::from_rgb(img))
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The PNG bytes.
    pub fn png(&self) -> &[u8] {
        &self.png
    }

    /// The pixels, decoded back from the PNG.
    pub fn to_rgb(&self) -> RgbImage {
        image::load_from_memory(&self.png)
            .expect("our own PNG decodes")
            .to_rgb8()
    }

    /// Writes the figure as a PNG file, atomically.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let fig = fastvision::show::Figure::from_rgb(image::RgbImage::new(2, 2));
    /// fig.save(&dir.path().join("fig.png")).unwrap();
    /// ```
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::atomic_write(path, &self.png)
    }

    /// Shows the figure inline in an evcxr notebook: one `image/png` output.
    pub fn evcxr_display(&self) {
        crate::show::display_png(&self.png);
    }
}
