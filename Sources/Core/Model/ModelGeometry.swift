/// The image sizes a loaded model takes (docs/ALGORITHM.md §2, "Sizes").
extension StableDiffusionModel {
    /// Pixels per latent pixel along a side (8 for SD 1.5).
    public var vaeFactor: Int { vae.config.downsamplingFactor }

    /// The side of the square the model was trained at (512 for SD 1.5): the UNet's sample size
    /// in latent pixels times the VAE's factor.
    public var nativeSize: Int { unet.config.sampleSize * vaeFactor }

    /// Image sides must be multiples of this (64 for SD 1.5): the VAE's factor times the UNet's
    /// halvings, so every level's feature map has whole sides and the up path meets its skips.
    public var sizeStep: Int { vaeFactor * (1 << max(unet.config.levels - 1, 0)) }

    public func accepts(height: Int, width: Int) -> Bool {
        height > 0 && width > 0 && height % sizeStep == 0 && width % sizeStep == 0
    }

    /// [latent channels, H / factor, W / factor].
    public func latentShape(height: Int, width: Int) -> [Int] {
        [vae.config.latentChannels, height / vaeFactor, width / vaeFactor]
    }
}
