import Foundation

/// A transfer's inputs as the pipeline takes them, from the files a user gave: each image cut and
/// resized by the `size` option (docs/ALGORITHM.md §2), each drawn mask through its image's
/// geometry. One path for every door (RPC, hot folders, `xattnd transfer`).
public struct TransferInputs {
    /// [3, H, W] in [−1, 1]; nil when prepared with `images: false` (admission checks only).
    public var structure, appearance: Tensor?
    public var masks: ObjectMasks
    public var structureGeometry, appearanceGeometry: ImageGeometry

    /// `images: false` computes the geometries and masks only (what a submit checks) and skips
    /// the images' resize.
    public static func prepare(structure: RGBImage, appearance: RGBImage, structureMask: RGBImage? = nil, appearanceMask: RGBImage? = nil,
                               options: TransferOptions, model: StableDiffusionModel,
                               maxPixels: Int = ImageGeometry.defaultMaxPixels, images: Bool = true) throws -> TransferInputs {
        func geometry(_ image: RGBImage) throws -> ImageGeometry {
            try ImageGeometry.fitting(sourceWidth: image.width, sourceHeight: image.height, size: options.size,
                                      nativeSize: model.nativeSize, step: model.sizeStep, maxPixels: maxPixels)
        }
        let gS = try geometry(structure), gA = try geometry(appearance)
        func mask(_ image: RGBImage?, _ g: ImageGeometry, role: String) throws -> Tensor? {
            guard let image else { return nil }
            let latent = model.latentShape(height: g.height, width: g.width)
            return try ObjectMask.prepare(image, image: g, latentHeight: latent[1], latentWidth: latent[2], role: role)
        }
        let masks = ObjectMasks(structure: try mask(structureMask, gS, role: "structure"), appearance: try mask(appearanceMask, gA, role: "appearance"))
        // The pipeline's own rules for given masks (masked AdaIN on, the latent's shape), checked here
        // too so that a submit is refused at once.
        try masks.validate(structureLatent: model.latentShape(height: gS.height, width: gS.width),
                           appearanceLatent: model.latentShape(height: gA.height, width: gA.width), options: options)
        return TransferInputs(structure: images ? ImagePreprocessing.modelInput(structure, geometry: gS) : nil,
                              appearance: images ? ImagePreprocessing.modelInput(appearance, geometry: gA) : nil,
                              masks: masks, structureGeometry: gS, appearanceGeometry: gA)
    }
}
