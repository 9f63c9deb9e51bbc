import Testing
import Core

/// Every kernel against PyTorch 2.0.1 (Tests/Fixtures/kernels.safetensors, written by
/// tools/reference/kernels.py). Inputs come from the same file, so both sides see the same bits.
/// Tolerances are scaled errors (|a − e| / max(1, |e|)); each states why it is what it is.
@Suite struct KernelParityTests {
    func fixture(_ name: String) throws -> Tensor {
        let file = try #require(Fixtures.kernels, "Tests/Fixtures/kernels.safetensors is missing; run tools/reference/kernels.py")
        return try file.tensor(name)
    }

    // Sums of ≤ 100 float32 products in another order than PyTorch: ≤ 1.7e-6 observed (conv3x3
    // panels), 1e-5 allowed.
    static let productTolerance: Float = 1e-5

    @Test func matmulBatched() throws {
        expectClose(try fixture("matmul_batched.a").matmul(fixture("matmul_batched.b")),
                    try fixture("matmul_batched.out"), tolerance: Self.productTolerance)
    }

    @Test func matmulSharedRightOperand() throws {
        expectClose(try fixture("matmul_shared.a").matmul(fixture("matmul_shared.b")),
                    try fixture("matmul_shared.out"), tolerance: Self.productTolerance)
    }

    @Test func linear() throws {
        let y = try fixture("linear.x").linear(weight: fixture("linear.weight"), bias: fixture("linear.bias"))
        expectClose(y, try fixture("linear.out"), tolerance: Self.productTolerance)
    }

    @Test(arguments: [
        ("conv3x3_s1_odd", 1, 1), ("conv3x3_s1_panels", 1, 1), ("conv3x3_s2", 2, 1),
        ("conv3x3_s2_panels", 2, 1), ("conv1x1", 1, 0), ("conv1x1_panels", 1, 0),
    ])
    func conv2d(name: String, stride: Int, padding: Int) throws {
        // The direct product; Winograd has its own tolerance (WinogradTests).
        let y = try fixture("\(name).x").conv2d(weight: fixture("\(name).weight"), bias: fixture("\(name).bias"),
                                                stride: stride, padding: .uniform(padding), algorithm: .direct)
        expectClose(y, try fixture("\(name).out"), tolerance: Self.productTolerance)
    }

    @Test func conv2dAsymmetricPadding() throws {
        let y = try fixture("conv3x3_s2_asym.x").conv2d(
            weight: fixture("conv3x3_s2_asym.weight"), bias: fixture("conv3x3_s2_asym.bias"),
            stride: 2, padding: Padding2D(top: 0, left: 0, bottom: 1, right: 1))
        expectClose(y, try fixture("conv3x3_s2_asym.out"), tolerance: Self.productTolerance)
    }

    // Statistics over 105 elements with mean ≈ 3: ≤ 9e-7 observed, 5e-6 allowed.
    @Test func groupNorm() throws {
        let y = try fixture("groupnorm.x").groupNorm(groups: 3, weight: fixture("groupnorm.weight"),
                                                     bias: fixture("groupnorm.bias"), eps: 1e-5)
        expectClose(y, try fixture("groupnorm.out"), tolerance: 5e-6)
    }

    @Test func groupNormFusedSiLU() throws {
        let y = try fixture("groupnorm_silu.x").groupNorm(groups: 3, weight: fixture("groupnorm_silu.weight"),
                                                          bias: fixture("groupnorm_silu.bias"), eps: 1e-6, fusedSiLU: true)
        expectClose(y, try fixture("groupnorm_silu.out"), tolerance: 5e-6)
    }

    @Test func layerNorm() throws {
        let y = try fixture("layernorm.x").layerNorm(weight: fixture("layernorm.weight"), bias: fixture("layernorm.bias"), eps: 1e-5)
        expectClose(y, try fixture("layernorm.out"), tolerance: 5e-6)  // 3e-7 observed
    }

    // exp: ≤ 2 ulp (Cephes); erf: ≤ 1.5e-7 absolute (A&S 7.1.26). Observed ≤ 4.1e-7 (GEGLU);
    // 2e-6 allowed.
    @Test func activations() throws {
        let x = try fixture("silu.x")
        expectClose(x.silu(), try fixture("silu.out"), tolerance: 2e-6)
        expectClose(x.gelu(), try fixture("gelu.out"), tolerance: 2e-6)
        expectClose(x.quickGelu(), try fixture("quick_gelu.out"), tolerance: 2e-6)
        expectClose(try fixture("geglu.x").geglu(), try fixture("geglu.out"), tolerance: 2e-6)
    }

    @Test func softmax() throws {
        expectClose(try fixture("softmax.x").softmax(), try fixture("softmax.out"), tolerance: 1e-6)  // 1.2e-7 observed
    }

    @Test func upsampleIsExact() throws {
        expectClose(try fixture("upsample.x").upsampleNearest2x(), try fixture("upsample.out"), tolerance: 0)
    }

    // Same float32 operations in the same order as diffusers; sin/cos of arguments up to 999 rad
    // differ by libm rounding only: 6e-8 observed, 1e-6 allowed.
    @Test func timestepEmbedding() throws {
        let t = try fixture("timestep.t").scalars
        let sd = Tensor.timestepEmbedding(timesteps: t, dim: 32, flipSinToCos: true, freqShift: 0)
        expectClose(sd, try fixture("timestep.sd_unet"), tolerance: 1e-6)
        let odd = Tensor.timestepEmbedding(timesteps: t, dim: 33, flipSinToCos: false, freqShift: 1)
        expectClose(odd, try fixture("timestep.shift1"), tolerance: 1e-6)
    }

    @Test(arguments: ["attention_small", "attention_long"])
    func attention(name: String) throws {
        let y = Attention.attentionHeadsFirst(q: try fixture("\(name).q"), k: try fixture("\(name).k"), v: try fixture("\(name).v"))
        expectClose(y, try fixture("\(name).out"), tolerance: Self.productTolerance)
    }

    /// ALGORITHM.md §8's contrast as a probability hook reproduces the reference's formula.
    @Test func attentionContrastHook() throws {
        let hook = AttentionProbabilityHook(appliesTo: { _ in true }) { block in
            let mean = 1 / Float(block.keyCount)
            for i in 0..<(block.rowCount * block.keyCount) {
                block.rows[i] = min(max((block.rows[i] - mean) * 1.67 + mean, 0), 1)
            }
        }
        let y = Attention.attentionHeadsFirst(q: try fixture("attention_contrast.q"), k: try fixture("attention_contrast.k"),
                                              v: try fixture("attention_contrast.v"), hook: hook)
        expectClose(y, try fixture("attention_contrast.out"), tolerance: Self.productTolerance)
    }
}
