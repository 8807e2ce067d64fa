"""CLIP and everything it takes to load one: the model (model), OpenAI's tokenizer
(tokenizer), every weights format (weights, reading tensors in state_dicts, Hugging Face's
layout in hf_layout, the JSON beside them in configs, OpenAI's archives in torchscript),
named models and hub ids (pretrained, hub), the optional open_clip backend
(open_clip_models), the fast CPU text tower (cpu_text), and load_model with its Encoder:
texts and images in, unit vectors out (encoder). The text tower also runs without torch,
in ONNX Runtime (onnx_text), from a graph written from its weights (onnx_graph, in the
protobuf of onnx_proto). torch is imported by the modules that need it, never by this
package itself: `pretrained` and `precisions` are read by commands that load no model."""
