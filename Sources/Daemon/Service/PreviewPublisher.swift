import Core
import Foundation
import Wire

/// Turns the pipeline's preview points into `JobPreview`s at the job's interval (`preview_every`):
/// the predicted clean latent through the linear map or the VAE, a PNG in base64. Called on the
/// worker's thread between UNet passes.
final class PreviewPublisher {
    let job: String
    let every: Int
    let decoder: PreviewDecoder
    let model: StableDiffusionModel
    let publish: (JobPreview) -> Void

    init(job: String, options: TransferOptions, model: StableDiffusionModel, publish: @escaping (JobPreview) -> Void) {
        (self.job, self.every, self.decoder, self.model, self.publish) = (job, options.resolvedPreviewEvery, options.previewDecoder, model, publish)
    }

    func take(_ point: PreviewPoint) {
        guard LatentPreview.isDue(step: point.step, total: point.total, every: every) else { return }
        let image = LatentPreview.image(point, decoder: decoder, model: model)
        guard let png = try? PNGLibrary.encode(image) else { return }
        publish(JobPreview(job: job, step: point.step, total: point.total, png: png.base64EncodedString()))
    }
}
