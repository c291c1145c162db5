"""The model cache: LoRA load/switch/unload/weights, embeddings, eviction order, threads, family mismatches."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from studio.context import Studio
from studio.generate import GenerationRequest, LoraChoice, generate
from tests.weights_files import make_embedding, make_lora


def quick(**kw):
    base = dict(prompt="a photo of a dog", model="builtin:tiny", steps=2, seed=11, save=False)
    return GenerationRequest(**{**base, **kw})


def px(result):
    return np.asarray(result.images[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def loras(session_studio):
    lora_dir = session_studio.settings.models_dir / "lora"
    return {
        "a": make_lora(session_studio, "builtin:tiny", lora_dir / "style_a.safetensors", seed=1),
        "b": make_lora(session_studio, "builtin:tiny", lora_dir / "style_b.safetensors", seed=2),
        "xl": make_lora(session_studio, "builtin:tiny-xl", lora_dir / "xl_only.safetensors", seed=3),
    }


def test_lora_load_switch_unload_and_weights(studio, loras):
    base = px(generate(studio, quick()))
    with_a = px(generate(studio, quick(loras=[LoraChoice("style_a", 1.0)])))
    with_b = px(generate(studio, quick(loras=[LoraChoice("style_b", 1.0)])))
    assert np.abs(with_a - base).mean() > 1 and np.abs(with_b - with_a).mean() > 1
    # Switching back and forth reuses the loaded adapters: same pixels, no reload.
    assert np.array_equal(px(generate(studio, quick(loras=[LoraChoice("style_a", 1.0)]))), with_a)
    assert studio.cache.holdings()[0].loras == ["style_a.safetensors", "style_b.safetensors"]
    # Weight 0 is the base; no LoRA chosen is the base; half weight lies between.
    assert np.array_equal(px(generate(studio, quick(loras=[LoraChoice("style_a", 0.0)]))), base)
    assert np.array_equal(px(generate(studio, quick())), base)
    half = px(generate(studio, quick(loras=[LoraChoice("style_a", 0.5)])))
    assert 0 < np.abs(half - base).mean() < np.abs(with_a - base).mean()
    # Two at once differ from either alone; prompt tags work like the picker.
    both = px(generate(studio, quick(loras=[LoraChoice("style_a", 1.0), LoraChoice("style_b", 1.0)])))
    assert np.abs(both - with_a).mean() > 1 and np.abs(both - with_b).mean() > 1
    tagged = generate(studio, quick(prompt="a photo of a dog <lora:style_b:1>"))
    assert np.array_equal(px(tagged), with_b)
    assert "<lora:style_b:1>" in tagged.images[0].parameters and "Lora hashes: \"style_b: " in tagged.images[0].parameters
    # Unload: gone from the cache, and the base is untouched.
    assert studio.cache.unload_lora("builtin:tiny", loras["a"])
    assert studio.cache.holdings()[0].loras == ["style_b.safetensors"]
    assert np.array_equal(px(generate(studio, quick())), base)


def test_switching_lora_matches_a_fresh_load(studio, settings, loras):
    generate(studio, quick(loras=[LoraChoice("style_a", 1.0)]))
    switched = px(generate(studio, quick(loras=[LoraChoice("style_b", 0.8)])))
    fresh = px(generate(Studio.open(settings), quick(loras=[LoraChoice("style_b", 0.8)])))
    assert np.array_equal(switched, fresh)


def test_lora_for_another_family_is_refused_and_base_stays_usable(studio, loras):
    before = px(generate(studio, quick()))
    with pytest.raises(ValueError, match=r"xl_only.safetensors was made for cross-attention width 64.*width 32"):
        generate(studio, quick(loras=[LoraChoice("xl_only", 1.0)]))
    assert np.array_equal(px(generate(studio, quick())), before)


def test_missing_and_corrupt_lora_files_are_named(studio, tmp_path):
    with pytest.raises(ValueError, match="lora file 'nope' not found"):
        generate(studio, quick(loras=[LoraChoice("nope", 1.0)]))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=f"{broken} is not a valid safetensors file"):
        generate(studio, quick(loras=[LoraChoice(str(broken), 1.0)]))


def test_textual_inversion_embedding(studio):
    width = 32  # builtin:tiny's text encoder width
    make_embedding(studio.settings.models_dir / "embeddings" / "zqstyle.safetensors", width, vectors=2, seed=5)
    plain = px(generate(studio, quick(prompt="a photo of zqstyle")))
    embedded = px(generate(studio, quick(prompt="a photo of zqstyle", embeddings=["zqstyle"])))
    assert np.abs(plain - embedded).mean() > 1
    make_embedding(studio.settings.models_dir / "embeddings" / "wide.safetensors", 768)
    with pytest.raises(ValueError, match="width 768, but the text encoder of base 'builtin:tiny' takes 32"):
        generate(studio, quick(embeddings=["wide"]))


def test_eviction_is_least_recently_used(settings):
    probe = Studio.open(settings)
    with probe.cache.pipeline("builtin:tiny"):
        pass
    one = probe.cache.held_bytes
    # Room for two tiny models at a time.
    studio = Studio.open(settings.with_(cache_budget_bytes=int(2.5 * one)))
    with studio.cache.pipeline("builtin:tiny"):
        pass
    with studio.cache.pipeline("builtin:tiny", controlnets=["builtin:tiny-controlnet"]):
        pass
    with studio.cache.pipeline("builtin:tiny"):  # tiny is now the most recently used
        pass
    held = {h.model_id for h in studio.cache.holdings()}
    assert held == {"builtin:tiny", "builtin:tiny-controlnet"}
    with studio.cache.pipeline("builtin:tiny-xl"):
        pass
    held = [h.model_id for h in studio.cache.holdings()]
    assert "builtin:tiny-controlnet" not in held and "builtin:tiny-xl" in held
    assert studio.cache.release() == 0 and studio.cache.held_bytes == 0


def test_model_in_use_is_never_evicted(settings):
    studio = Studio.open(settings.with_(cache_budget_bytes=1))  # nothing fits: only borrowing keeps a model
    with studio.cache.pipeline("builtin:tiny") as pipe:
        with studio.cache.pipeline("builtin:tiny-xl"):
            pass
        assert "builtin:tiny" in {h.model_id for h in studio.cache.holdings()}
        assert pipe.unet is not None


def test_two_threads_generate_at_once(studio):
    expected = {s: px(generate(studio, quick(seed=s))) for s in (1, 2)}
    got, errors = {}, []

    def work(seed):
        try:
            for _ in range(2):
                got[seed] = px(generate(studio, quick(seed=seed, sampler="DPM++ 2M" if seed == 1 else "Euler a")))
        except Exception as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert np.array_equal(got[2], expected[2])
    assert not np.array_equal(got[1], expected[1])  # seed 1 ran with another sampler, as asked


def test_controlnet_for_another_family_is_refused(studio):
    with pytest.raises(ValueError, match="does not fit base 'builtin:tiny-xl'"):
        with studio.cache.pipeline("builtin:tiny-xl", controlnets=["builtin:tiny-controlnet"]):
            pass


def test_helper_models_are_borrowed_counted_and_released(settings):
    from studio.pocket import CHECKER_DIR

    studio = Studio.open(settings)
    with studio.cache.borrow("clip", "builtin:tiny-clip") as clip:
        assert clip.model.training is False
        with studio.cache.borrow("checker", str(CHECKER_DIR)) as checker:
            assert checker.labels[-2:] == ("human", "dog")
            held = {h.kind: h for h in studio.cache.holdings()}
            assert held["clip"].in_use and held["checker"].in_use
    assert studio.cache.held_bytes == held["clip"].nbytes + held["checker"].nbytes > 0
    with studio.cache.borrow("clip", "builtin:tiny-clip") as again:
        assert again is clip  # loaded once
    assert studio.cache.release() == 0 and studio.cache.held_bytes == 0
    with pytest.raises(ValueError, match="`kind` must be one of clip, captioner, checker, upscaler but is 'vae'"):
        with studio.cache.borrow("vae", "x"):
            pass


def test_helper_models_count_in_the_budget(settings):
    studio = Studio.open(settings)
    with studio.cache.borrow("clip", "builtin:tiny-clip"):
        pass
    clip_bytes = studio.cache.held_bytes
    tight = Studio.open(settings.with_(cache_budget_bytes=clip_bytes + 1))
    with tight.cache.borrow("clip", "builtin:tiny-clip"):
        pass
    with tight.cache.pipeline("builtin:tiny"):  # over budget: the idle CLIP goes first
        pass
    assert [h.kind for h in tight.cache.holdings()] == ["base"]
