import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from tests.helpers import ALL_CONFIGS, shipped, tiny
from vidcolour.nets import (
    IBN,
    ConvAct,
    InstanceHalf,
    PhaseConvTranspose,
    build_discriminator,
    build_generator,
    count_flops,
    count_params,
    flop_counter,
    fold_for_inference,
    fold_for_prediction,
    pad_to_fit,
)
from vidcolour.nets.efficientnet import SameConv
from vidcolour.nets.fold import fuse_activations
from vidcolour.nets.layers import FUSED_CALLS


def _norm_kind(block: nn.Module) -> str | None:
    norm = getattr(block, "norm", None)
    if norm is None:
        return None
    return {nn.BatchNorm2d: "bn", nn.InstanceNorm2d: "in", IBN: "ibn"}[type(norm)]


def _convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_generator_maps_l_to_ab_in_range(name: str) -> None:
    gen = build_generator(tiny(name).model.generator)
    l = torch.rand(2, 1, 256, 256) * 2 - 1
    for mode in (gen.train, gen.eval):
        mode()
        ab = gen(l)
        assert ab.shape == (2, 2, 256, 256)
        assert ab.abs().max() <= 1.0


def test_paper_size_generator_matches_the_paper_architecture() -> None:
    gen = build_generator(shipped("ibn_sn_md").model.generator)
    # e64:e128:e256:e512:e512:e512:e512 / d512:d512:d512:d256:d128:d64 / 4x4 conv to 2,
    # decoder inputs doubled by the skips: (in, out) channels of every 4x4 conv.
    layers = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    layers += [(512, 512), (1024, 512), (1024, 512), (1024, 256), (512, 128), (256, 64), (128, 2)]
    expected = sum(cin * cout * 16 for cin, cout in layers)
    weights = sum(p.numel() for n, p in gen.named_parameters() if n.endswith("weight.original"))
    assert weights == expected
    with torch.no_grad():
        ab = gen.eval()(torch.zeros(1, 1, 256, 256))
    assert ab.shape == (1, 2, 256, 256)


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_discriminator_maps_per_scale(name: str) -> None:
    config = tiny(name).model.discriminator
    disc = build_discriminator(config)
    outputs = disc(torch.zeros(2, 1, 256, 256), torch.zeros(2, 2, 256, 256))
    sizes = [30, 14, 6][: config.scales]  # H / 2**n / 8 - 2 for scale n
    assert [tuple(o.shape) for o in outputs] == [(2, 1, s, s) for s in sizes]
    assert len(disc.scales) == config.scales
    # The scales are independent networks, not one network applied three times.
    per_scale = len(list(disc.scales[0].parameters()))
    assert len({id(p) for p in disc.parameters()}) == config.scales * per_scale


def test_discriminator_receptive_field_is_70() -> None:
    disc = build_discriminator(tiny("bn").model.discriminator).eval()
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    logits = disc.scales[0](x)
    logits[0, 0, 15, 15].backward()
    assert x.grad is not None
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_spectral_norm_exactly_where_configured(name: str) -> None:
    config = tiny(name).model
    for net, sn in (
        (build_generator(config.generator), config.generator.spectral_norm),
        (build_discriminator(config.discriminator), config.discriminator.spectral_norm),
    ):
        # A pretrained encoder never gets spectral norm: it would rescale the learned weights.
        pretrained = getattr(net, "pretrained_part", lambda: None)()
        kept = {id(c) for c in _convs(pretrained)} if pretrained is not None else set()
        convs = [c for c in _convs(net) if id(c) not in kept]
        assert len(convs) + len(kept) == len(_convs(net))
        assert not any(
            parametrize.is_parametrized(c, "weight") for c in _convs(pretrained or nn.Identity())
        )
        with_sn = [c for c in convs if parametrize.is_parametrized(c, "weight")]
        assert len(with_sn) == (len(convs) if sn else 0)


def test_norm_layouts() -> None:
    # Encoder e1..e7, decoder d1..d6, discriminator C64..C512; None = unnormalised.
    expected = {
        "bn": (
            [None] + ["bn"] * 6,
            ["bn"] * 6,
            [None, "bn", "bn", "bn"],
        ),
        "in": ([None] + ["in"] * 6, ["in"] * 6, [None, "in", "in", "in"]),
        # IBN-Net reading: IN+BN split in the shallow half, BN in the deep half.
        "ibn": (
            [None, "ibn", "ibn", "ibn", "bn", "bn", "bn"],
            ["bn", "bn", "bn", "ibn", "ibn", "ibn"],
            [None, "ibn", "ibn", "bn"],
        ),
        # bbc/ColorGAN: IN only in G's last decoder block and D's second block.
        "ibn_release": (
            [None] + ["bn"] * 6,
            ["bn"] * 5 + ["in"],
            [None, "in", "bn", "bn"],
        ),
    }
    for norm, (enc, dec, disc) in expected.items():
        config = tiny("bn", norm=norm).model
        gen = build_generator(config.generator)
        d = build_discriminator(type(config.discriminator)(ndf=8, norm=norm))
        assert [_norm_kind(b) for b in gen.encoder] == enc, norm
        assert [_norm_kind(b) for b in gen.decoder] == dec, norm
        assert _norm_kind(gen.head) is None
        assert [_norm_kind(b) for b in d.scales[0].blocks][:4] == disc, norm


def test_dropout_only_in_first_three_decoder_blocks() -> None:
    gen = build_generator(tiny("bn", dropout=0.5).model.generator)
    has_dropout = [any(isinstance(m, nn.Dropout) for m in b.modules()) for b in gen.decoder]
    assert has_dropout == [True, True, True, False, False, False]
    plain = build_generator(tiny("bn").model.generator)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_nearest_upsampling_keeps_parameters_and_shapes() -> None:
    transpose = build_generator(tiny("bn").model.generator)
    nearest = build_generator(tiny("bn", upsample="nearest").model.generator)
    assert count_params(nearest) == count_params(transpose)
    assert any(isinstance(m, nn.Upsample) for m in nearest.modules())
    assert nearest(torch.zeros(2, 1, 128, 128)).shape == (2, 2, 128, 128)


def test_input_size_rules() -> None:
    bn = build_generator(tiny("bn").model.generator)
    assert (bn.size_multiple, bn.min_size) == (128, 128)
    assert bn(torch.zeros(2, 1, 128, 384)).shape == (2, 2, 128, 384)
    with pytest.raises(ValueError, match="multiple of 128, got 100x100"):
        bn(torch.zeros(1, 1, 100, 100))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        bn(torch.zeros(1, 3, 128, 128))
    # Instance norm at the bottleneck needs a 2x2 map: 256 px for depth 7.
    inorm = build_generator(tiny("in").model.generator)
    assert inorm.min_size == 256
    with pytest.raises(ValueError, match="at least 256x256"):
        inorm(torch.zeros(2, 1, 128, 128))


def test_pad_to_fit_and_crop_back() -> None:
    x = torch.rand(1, 1, 241, 321)
    padded, (h, w) = pad_to_fit(x, 128, 128)
    assert padded.shape == (1, 1, 256, 384) and (h, w) == (241, 321)
    assert torch.equal(padded[..., :h, :w], x)
    small, _ = pad_to_fit(torch.rand(1, 1, 40, 50), 128, 256)  # too small to reflect: replicate
    assert small.shape == (1, 1, 256, 256)
    same, _ = pad_to_fit(torch.rand(1, 1, 256, 256), 128, 256)
    assert same.shape == (1, 1, 256, 256)


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_folding_keeps_outputs(name: str) -> None:
    config = tiny(name).model
    gen = build_generator(config.generator)
    disc = build_discriminator(config.discriminator)
    l = torch.rand(2, 1, 256, 256) * 2 - 1
    ab = torch.rand(2, 2, 256, 256) * 2 - 1
    with torch.no_grad():
        for _ in range(3):  # move BN running statistics and SN's power-iteration vectors
            gen.train()(l)
            disc.train()(l, ab)
        before_g = gen.eval()(l)
        before_d = disc.eval()(l, ab)
        fold_for_inference(gen)
        fold_for_inference(disc)
        after_g = gen(l)
        after_d = disc(l, ab)
    assert torch.allclose(before_g, after_g, atol=1e-5)
    for b, a in zip(before_d, after_d, strict=True):
        assert torch.allclose(b, a, atol=1e-4, rtol=1e-4)
    for net in (gen, disc):
        assert not any(parametrize.is_parametrized(m) for m in net.modules())
        assert not any(type(getattr(m, "norm", None)) is nn.BatchNorm2d for m in net.modules())


def _ibn_generator(name: str = "ibn_sn_md") -> nn.Module:
    """A tiny IBN generator whose batch norms have moved off their initial statistics."""
    gen = build_generator(tiny(name).model.generator)
    with torch.no_grad():
        for _ in range(3):
            gen.train()(torch.rand(2, 1, 256, 256) * 2 - 1)
    return gen.eval()


@pytest.mark.parametrize("name", ["ibn_sn_md", "lite0_unet"])
def test_prediction_form_keeps_outputs(name: str) -> None:
    gen = _ibn_generator(name)
    l = torch.rand(2, 1, 256, 256) * 2 - 1
    with torch.no_grad():
        before = gen(l)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            before_bf16 = gen(l).float()
    fold_for_prediction(gen)
    assert not any(isinstance(m, IBN) for m in gen.modules())
    assert any(isinstance(m, InstanceHalf) for m in gen.modules())
    assert isinstance(gen.head.conv, PhaseConvTranspose)  # the head: a 4x4 up-conv to 2
    with torch.inference_mode():
        after = gen(l)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            after_bf16 = gen(l)
    assert torch.allclose(before, after, atol=1e-5)
    assert after_bf16.dtype == torch.bfloat16  # the IBN's float32 no longer reaches the head
    # bf16 rounds at other places now, no worse: the folded form's bf16 error against float32
    # stays within the unfolded form's (how large both are depends on the CPU: emulated bf16
    # on an AVX2-only one rounds otherwise than native bf16), and the two forms within 2% of
    # the ab range of each other
    error_before = (before_bf16 - before).abs()
    error_after = (after_bf16.float() - before).abs()
    assert error_after.mean() <= 1.15 * error_before.mean()  # 0.88-1.03 over 16 seeds (AVX2)
    assert error_after.max() <= 1.5 * error_before.max()  # 0.77-1.33
    assert (before_bf16 - after_bf16.float()).abs().max() < 0.02


def test_instance_half_works_in_place_only_without_autograd() -> None:
    half = InstanceHalf(2, nn.InstanceNorm2d(2, affine=True))
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        y = half(x.clone())
        same = x.clone()
        assert half(same) is same  # written into its input: no copy of the untouched half
    assert torch.equal(y[:, 2:], x[:, 2:])
    assert torch.allclose(y[:, :2].mean((2, 3)), torch.zeros(1, 2), atol=1e-5)
    leaf = x.clone().requires_grad_()
    recorded = leaf * 1  # in an autograd graph: left as it is, a new tensor out, gradients flow
    out = half(recorded)
    out.sum().backward()
    assert out is not recorded and torch.equal(recorded.detach(), x)
    assert leaf.grad is not None
    assert torch.allclose(out.detach(), y, atol=1e-6)
    # the form compiled code takes: the same, from sums and one scale and shift
    assert torch.allclose(half.by_sums(x), y, atol=1e-5)


@pytest.mark.parametrize("affine", [True, False])
def test_instance_half_channels_last_is_instance_norm(affine: bool) -> None:
    # float32 channels-last takes its own two-pass form: it must be instance norm (to float64's
    # within float32's resolution of the data), stay in place and leave the other channels be
    torch.manual_seed(0)
    inorm = nn.InstanceNorm2d(3, affine=affine)
    if affine:
        nn.init.normal_(inorm.weight)
        nn.init.normal_(inorm.bias)
    half = InstanceHalf(3, inorm)
    exact = copy.deepcopy(inorm).double()
    for offset in (0.0, 40.0):  # a mean far from 0 is where a one-pass variance fails
        x = (torch.randn(2, 5, 6, 7) + offset).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            same = x.clone()
            y = half.in_place_nhwc(same)
            taken = half(x.clone())  # what forward does with float32 channels-last
            want = exact(x[:, :3].double()).float()
        assert torch.equal(taken, y)  # the form under test, not instance norm's own
        assert y is same and y.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y[:, 3:], x[:, 3:])
        assert torch.allclose(y[:, :3], want, atol=2e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_phase_conv_transpose_is_the_transposed_conv(bias: bool) -> None:
    up = nn.ConvTranspose2d(6, 2, 4, stride=2, padding=1, bias=bias)
    phases = PhaseConvTranspose(up)
    x = torch.randn(2, 6, 5, 7)  # odd sizes: every phase's edge
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            out = phases(x.contiguous(memory_format=layout))
            assert out.shape == (2, 2, 10, 14)
            assert torch.allclose(out, up(x), atol=1e-6)
            # the input in two parts along channels (a U-Net's last output and its skip): the
            # same as their concatenation, which is never made
            parts = [p.contiguous(memory_format=layout) for p in x.split([4, 2], dim=1)]
            assert torch.allclose(phases(parts), up(x), atol=1e-6)


def test_only_narrow_stride_two_transposed_convs_are_folded() -> None:
    net = nn.Sequential(
        nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
        nn.ConvTranspose2d(2, 16, 4, stride=2, padding=1),  # wide: oneDNN's own is fast
        nn.ConvTranspose2d(16, 2, 3, stride=1, padding=1),  # another geometry
    )
    fold_for_prediction(net)
    assert [type(m).__name__ for m in net] == [
        "PhaseConvTranspose",
        "ConvTranspose2d",
        "ConvTranspose2d",
    ]


fused_calls = pytest.mark.skipif(
    not FUSED_CALLS, reason="no oneDNN fused convolutions in this torch"
)

CONV_ACT_CASES = [
    (nn.Conv2d(3, 8, 1), nn.ReLU6()),
    (nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU6()),  # depthwise
    (nn.Conv2d(3, 8, 4, stride=2, padding=1), nn.ReLU(inplace=True)),
    (nn.ConvTranspose2d(3, 8, 4, stride=2, padding=1), nn.ReLU(inplace=True)),
    (SameConv(3, 8, 3, 2), nn.ReLU6()),  # 'same' padding, asymmetric on odd sizes
    (SameConv(8, 8, 5, 2, groups=8, bias=False), nn.ReLU6()),
]


@fused_calls
@pytest.mark.parametrize(("conv", "act"), CONV_ACT_CASES)
@pytest.mark.parametrize("size", [(12, 18), (13, 17)])
def test_conv_act_is_the_conv_then_its_activation(
    conv: nn.Module, act: nn.Module, size: tuple[int, int]
) -> None:
    fused = ConvAct(conv, act)
    x = torch.randn(2, conv.in_channels, *size)
    with torch.no_grad():
        want = act(conv(x.clone()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want_bf16 = act(conv(x.clone()))
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        with torch.inference_mode():
            got = fused(xl)
            assert got.shape == want.shape and got.dtype == torch.float32
            assert torch.allclose(got, want, atol=1e-5)
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    got_bf16 = fused(xl)
                assert got_bf16.dtype == torch.bfloat16
                # a clamp gives the same codes before or after rounding (equal on a Xeon with
                # AMX); another CPU's oneDNN may sum in another order: one bfloat16 step
                step = 2.0**-7
                assert torch.allclose(got_bf16.float(), want_bf16.float(), rtol=step, atol=step)
        # counted as the convolution it is, fused or not
        with torch.inference_mode():
            assert count_flops(fused, xl) == count_flops(conv, xl) > 0


def test_conv_act_takes_the_plain_path_under_autograd() -> None:
    conv, act = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6()
    fused = ConvAct(conv, act)
    x = torch.randn(1, 3, 8, 8)
    out = fused(x)
    out.sum().backward()  # gradients flow to the conv's weights
    assert conv.weight.grad is not None
    assert torch.equal(out.detach(), act(conv(x)).detach())


def test_only_a_conv_right_before_its_activation_is_fused() -> None:
    net = nn.Sequential(
        nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 4, 2, 1), act=nn.ReLU6())),
        nn.Sequential(
            OrderedDict(conv=nn.Conv2d(4, 4, 4, 2, 1), norm=nn.BatchNorm2d(4), act=nn.ReLU())
        ),  # the norm folds first: then fused
        nn.Sequential(
            OrderedDict(conv=nn.Conv2d(4, 4, 4, 2, 1), norm=nn.InstanceNorm2d(4), act=nn.ReLU())
        ),  # instance norm stays between them: not fused
        nn.Sequential(OrderedDict(conv=nn.Conv2d(4, 2, 3, 1, 1), act=nn.Tanh())),  # no fused form
        nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 2, 3, 1, 1), act=nn.LeakyReLU(0.2))),  # neither
    )
    fold_for_prediction(net)
    fold_for_prediction(net)  # twice (open_model, then Colouriser): nothing fused twice
    assert type(net[0].conv.conv) is nn.Conv2d
    assert [type(block.conv).__name__ for block in net] == [
        "ConvAct",
        "ConvAct",
        "Conv2d",
        "Conv2d",
        "Conv2d",
    ]
    acts = [type(block.act).__name__ for block in net]
    assert acts == ["Identity", "Identity", "ReLU", "Tanh", "LeakyReLU"]


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("weight_grad", [True, False])
def test_a_convolution_backward_counts_what_its_forward_did_per_gradient(
    groups: int, weight_grad: bool
) -> None:
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False).requires_grad_(weight_grad)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    forward = 2 * 2 * 16 * (16 // groups) * 9 * 12 * 12  # 2 FLOPs a multiply-add
    counter = flop_counter()
    with counter:
        conv(x).sum().backward()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert counts["aten.convolution"] == forward
    assert counts["aten.convolution_backward"] == forward * (2 if weight_grad else 1)


def test_fusing_leaves_a_conv_it_cannot_express_as_it_was() -> None:
    block = nn.Module()
    block.conv = nn.Conv2d(3, 4, 3, padding="same")  # string padding: no fused call for it
    block.act = nn.ReLU6()
    fuse_activations(block)
    assert type(block.conv) is nn.Conv2d and type(block.act) is nn.ReLU6
    block.conv = nn.Conv2d(3, 4, 3, padding=1)
    fuse_activations(block)
    assert isinstance(block.conv, ConvAct) and type(block.act) is nn.Identity
