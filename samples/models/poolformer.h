// timm's PoolFormer (MetaFormer, timm/models/metaformer.py) built from peft.cpp layers with
// timm's module and parameter names, so a state dict saved from
// `timm.create_model("poolformer_m36", num_classes=N)` loads by name, and named_modules()
// lists the same names in the same order as timm's (the seed ../shared/seeds/custom_models.md
// prints its first entries). Every container runs its children through the children table,
// so a LoRA layer injected at `stages.0.blocks.0.mlp.fc1` is what forward runs.
//
// PoolFormer v1 (poolformer_s12 ... poolformer_m48) in timm: no norm in the stem or the
// downsampling layers, GroupNorm1 norms, GELU MLPs with bias, layer scale (init 1e-6 for
// the 36/48-block models), no res scale, no drop path, and a plain Linear classifier head.
#pragma once
#include <peft/peft.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

namespace peft::samples {

// timm.layers.GroupNorm1: GroupNorm with one group over (C, H, W), eps 1e-5.
class GroupNorm1 : public nn::GroupNorm {
 public:
  PEFT_MODULE_CLONE(GroupNorm1)
  explicit GroupNorm1(int64_t num_channels, double eps = 1e-5) : nn::GroupNorm(1, num_channels, eps) {}
  std::string type_name() const override { return "GroupNorm1"; }
};

// metaformer.Stem: conv 7×7 / stride 4 / padding 2, then norm (Identity for PoolFormer v1).
class Stem : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Stem)
  Stem(int64_t in_channels, int64_t out_channels) {
    register_module("conv", std::make_shared<nn::Conv2d>(in_channels, out_channels, 7,
                                                         nn::Conv2dConfig{{4, 4}, {2, 2}, {1, 1}, 1, true}));
    register_module("norm", std::make_shared<nn::Identity>());
  }
  std::string type_name() const override { return "Stem"; }
  Tensor forward(const Tensor& x) override { return child("norm")->forward(child("conv")->forward(x)); }
};

// metaformer.Downsampling: norm (Identity here) *before* a 3×3 / stride 2 / padding 1 conv.
class Downsampling : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Downsampling)
  Downsampling(int64_t in_channels, int64_t out_channels) {
    register_module("norm", std::make_shared<nn::Identity>());
    register_module("conv", std::make_shared<nn::Conv2d>(in_channels, out_channels, 3,
                                                         nn::Conv2dConfig{{2, 2}, {1, 1}, {1, 1}, 1, true}));
  }
  std::string type_name() const override { return "Downsampling"; }
  Tensor forward(const Tensor& x) override { return child("conv")->forward(child("norm")->forward(x)); }
};

// metaformer.Scale: x * scale.view(dim, 1, 1) (layer scale of an NCHW block).
class Scale : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Scale)
  Scale(int64_t dim, double init_value) : dim_(dim) {
    register_parameter("scale", Tensor::full({dim}, init_value));
  }
  std::string type_name() const override { return "Scale"; }
  Tensor forward(const Tensor& x) override { return mul(x, param("scale").view({dim_, 1, 1})); }

 private:
  int64_t dim_;
};

// metaformer.Pooling, PoolFormer's token mixer: avg_pool(x) − x, the pool excluding padding.
class Pooling : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Pooling)
  explicit Pooling(int64_t pool_size = 3) {
    register_module("pool", std::make_shared<nn::AvgPool2d>(pool_size, 1, pool_size / 2, false, false));
  }
  std::string type_name() const override { return "Pooling"; }
  Tensor forward(const Tensor& x) override { return sub(child("pool")->forward(x), x); }
};

// timm.layers.Mlp with use_conv=True: 1×1 convolutions, as in every NCHW MetaFormer block.
class Mlp : public nn::Module {
 public:
  PEFT_MODULE_CLONE(Mlp)
  Mlp(int64_t in_features, int64_t hidden_features, double drop = 0.0) {
    register_module("fc1", std::make_shared<nn::Conv2d>(in_features, hidden_features, 1));
    register_module("act", std::make_shared<nn::GELU>());
    register_module("drop1", std::make_shared<nn::Dropout>(drop));
    register_module("norm", std::make_shared<nn::Identity>());
    register_module("fc2", std::make_shared<nn::Conv2d>(hidden_features, in_features, 1));
    register_module("drop2", std::make_shared<nn::Dropout>(drop));
  }
  std::string type_name() const override { return "Mlp"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& [name, m] : named_children()) h = m->forward(h);  // fc1, act, drop1, norm, fc2, drop2
    return h;
  }
};

// metaformer.MetaFormerBlock:
//   x = res_scale1(x) + layer_scale1(drop_path1(token_mixer(norm1(x))))
//   x = res_scale2(x) + layer_scale2(drop_path2(mlp(norm2(x))))
class MetaFormerBlock : public nn::Module {
 public:
  PEFT_MODULE_CLONE(MetaFormerBlock)
  MetaFormerBlock(int64_t dim, double layer_scale_init_value, double mlp_ratio = 4.0) {
    register_module("norm1", std::make_shared<GroupNorm1>(dim));
    register_module("token_mixer", std::make_shared<Pooling>(3));
    register_module("drop_path1", std::make_shared<nn::Identity>());
    register_module("layer_scale1", std::make_shared<Scale>(dim, layer_scale_init_value));
    register_module("res_scale1", std::make_shared<nn::Identity>());
    register_module("norm2", std::make_shared<GroupNorm1>(dim));
    register_module("mlp", std::make_shared<Mlp>(dim, static_cast<int64_t>(mlp_ratio * static_cast<double>(dim))));
    register_module("drop_path2", std::make_shared<nn::Identity>());
    register_module("layer_scale2", std::make_shared<Scale>(dim, layer_scale_init_value));
    register_module("res_scale2", std::make_shared<nn::Identity>());
  }
  std::string type_name() const override { return "MetaFormerBlock"; }
  Tensor forward(const Tensor& x) override {
    auto run = [this](const char* name, const Tensor& t) { return child(name)->forward(t); };
    Tensor h = add(run("res_scale1", x),
                   run("layer_scale1", run("drop_path1", run("token_mixer", run("norm1", x)))));
    return add(run("res_scale2", h), run("layer_scale2", run("drop_path2", run("mlp", run("norm2", h)))));
  }
};

// metaformer.MetaFormerStage: downsample (Identity when the width does not change), then blocks.
class MetaFormerStage : public nn::Module {
 public:
  PEFT_MODULE_CLONE(MetaFormerStage)
  MetaFormerStage(int64_t in_chs, int64_t out_chs, int64_t depth, double layer_scale_init_value) {
    if (in_chs == out_chs) register_module("downsample", std::make_shared<nn::Identity>());
    else register_module("downsample", std::make_shared<Downsampling>(in_chs, out_chs));
    auto blocks = std::make_shared<nn::Sequential>();
    for (int64_t i = 0; i < depth; ++i)
      blocks->push_back(std::make_shared<MetaFormerBlock>(out_chs, layer_scale_init_value));
    register_module("blocks", blocks);
  }
  std::string type_name() const override { return "MetaFormerStage"; }
  Tensor forward(const Tensor& x) override { return child("blocks")->forward(child("downsample")->forward(x)); }
};

// timm.layers.SelectAdaptivePool2d(pool_type="avg"): pool = AdaptiveAvgPool2d(1), flatten = Identity.
class SelectAdaptivePool2d : public nn::Module {
 public:
  PEFT_MODULE_CLONE(SelectAdaptivePool2d)
  SelectAdaptivePool2d() {
    register_module("pool", std::make_shared<nn::AdaptiveAvgPool2d>(1));
    register_module("flatten", std::make_shared<nn::Identity>());
  }
  std::string type_name() const override { return "SelectAdaptivePool2d"; }
  Tensor forward(const Tensor& x) override { return child("flatten")->forward(child("pool")->forward(x)); }
};

struct PoolFormerConfig {
  std::vector<int64_t> depths{6, 6, 18, 6};
  std::vector<int64_t> dims{96, 192, 384, 768};
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
  double layer_scale_init_value = 1e-6;  // timm: 1e-5 for s12/s24, 1e-6 for s36/m36/m48
};

inline PoolFormerConfig poolformer_m36_config(int64_t num_classes = 1000) {
  PoolFormerConfig c;
  c.num_classes = num_classes;
  return c;
}

// timm.models.metaformer.MetaFormer with PoolFormer v1 settings.
class MetaFormer : public nn::Module {
 public:
  PEFT_MODULE_CLONE(MetaFormer)
  explicit MetaFormer(const PoolFormerConfig& cfg = poolformer_m36_config()) : cfg_(cfg) {
    PEFT_CHECK(!cfg.dims.empty() && cfg.dims.size() == cfg.depths.size(), "MetaFormer: ", cfg.depths.size(),
               " depths for ", cfg.dims.size(), " dims");
    register_module("stem", std::make_shared<Stem>(cfg.in_chans, cfg.dims[0]));
    auto stages = std::make_shared<nn::Sequential>();
    int64_t prev = cfg.dims[0];
    for (size_t i = 0; i < cfg.dims.size(); ++i) {
      stages->push_back(
          std::make_shared<MetaFormerStage>(prev, cfg.dims[i], cfg.depths[i], cfg.layer_scale_init_value));
      prev = cfg.dims[i];
    }
    register_module("stages", stages);
    // timm's head is an nn.Sequential(OrderedDict(...)): named children, run in order.
    auto head = std::make_shared<nn::Sequential>();
    head->register_module("global_pool", std::make_shared<SelectAdaptivePool2d>());
    head->register_module("norm", std::make_shared<nn::LayerNorm2d>(prev));
    head->register_module("flatten", std::make_shared<nn::Flatten>(1));
    // timm versions differ here (Identity for PoolFormer v1 in the seed's timm, Dropout(0.0) in
    // timm 1.0.31); both are parameter-free and compute the identity.
    head->register_module("drop", std::make_shared<nn::Identity>());
    if (cfg.num_classes > 0) head->register_module("fc", std::make_shared<nn::Linear>(prev, cfg.num_classes));
    else head->register_module("fc", std::make_shared<nn::Identity>());
    register_module("head", head);
    init_weights(*this);
  }
  std::string type_name() const override { return "MetaFormer"; }
  Tensor forward(const Tensor& x) override {
    PEFT_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_chans, "MetaFormer: expected input (N, ", cfg_.in_chans,
               ", H, W), got ", shape_str(x.shape()));
    return child("head")->forward(child("stages")->forward(child("stem")->forward(x)));
  }
  const PoolFormerConfig& config() const { return cfg_; }

 private:
  // timm's _init_weights: trunc_normal_(std=.02) on Conv2d / Linear weights (truncated at ±2,
  // i.e. 100 σ: a plain normal here), zero biases.
  // (Walks named_children(): named_modules() needs the shared_ptr that does not exist yet.)
  static void init_weights(nn::Module& m) {
    for (auto& [name, c] : m.named_children()) {
      if (dynamic_cast<nn::Conv2d*>(c.get()) || dynamic_cast<nn::Linear*>(c.get())) {
        nn::init::normal_(c->param("weight"), 0.0, 0.02);
        if (c->has_param("bias")) nn::init::zeros_(c->param("bias"));
      }
      init_weights(*c);
    }
  }
  PoolFormerConfig cfg_;
};

inline std::shared_ptr<MetaFormer> poolformer_m36(int64_t num_classes = 1000) {
  return std::make_shared<MetaFormer>(poolformer_m36_config(num_classes));
}

// The configuration a timm MetaFormer state dict was saved from: widths from the block norms,
// depths from the block indices, num_classes from head.fc. Lets a program load poolformer_m36
// weights or a smaller model of the same family without being told its shape.
inline PoolFormerConfig poolformer_config_from_state_dict(const nn::StateDict& sd) {
  PoolFormerConfig c;
  c.depths.clear();
  c.dims.clear();
  static const std::regex block_key(R"(stages\.(\d+)\.blocks\.(\d+)\.norm1\.weight)");
  for (const auto& [key, t] : sd) {
    std::smatch m;
    if (!std::regex_match(key, m, block_key)) continue;
    const size_t stage = std::stoul(m[1].str());
    const int64_t block = std::stoll(m[2].str());
    if (c.depths.size() <= stage) {
      c.depths.resize(stage + 1, 0);
      c.dims.resize(stage + 1, 0);
    }
    c.depths[stage] = std::max(c.depths[stage], block + 1);
    c.dims[stage] = t.size(0);
  }
  PEFT_CHECK(!c.depths.empty(), "poolformer_config_from_state_dict: no key stages.<i>.blocks.<j>.norm1.weight; not a "
             "timm MetaFormer state dict");
  for (size_t i = 0; i < c.depths.size(); ++i)
    PEFT_CHECK(c.depths[i] > 0, "poolformer_config_from_state_dict: stage ", i, " has no blocks");
  const Tensor& stem = io::find_tensor(sd, "stem.conv.weight");
  c.in_chans = stem.size(1);
  c.num_classes = 0;
  for (const auto& [key, t] : sd)
    if (key == "head.fc.weight") c.num_classes = t.size(0);
  return c;
}

}  // namespace peft::samples
