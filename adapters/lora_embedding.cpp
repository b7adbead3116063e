#include "adapters/lora_embedding.h"

#include "core/ops.h"
#include "layers/activation.h"
#include "layers/embedding.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace peft {

namespace {
std::shared_ptr<nn::Embedding> as_embedding(const nn::ModulePtr& m) { return std::dynamic_pointer_cast<nn::Embedding>(m); }
}  // namespace

LoraEmbedding::LoraEmbedding(std::shared_ptr<nn::Module> base, const std::string& adapter_name,
                             const LoraLayerSettings& s)
    : LoraLayer(base) {
  PEFT_CHECK(as_embedding(base) != nullptr, "lora.Embedding: base layer must be an Embedding, got ", base->type_name());
  update_layer(adapter_name, s);
}

void LoraEmbedding::update_layer(const std::string& name, const LoraLayerSettings& s) {
  // PEFT checks this in Embedding.__init__; here every adapter is checked.
  PEFT_CHECK(!s.lora_bias, "lora_bias=True is not supported for Embedding.");
  add_adapter_settings(name, s);
  auto base = as_embedding(base_layer());
  const Tensor& W = base->param("weight");
  // Registered as PEFT does, though Embedding's forward never applies it.
  dict("lora_dropout").insert(name, s.lora_dropout > 0 ? nn::ModulePtr(std::make_shared<nn::Dropout>(s.lora_dropout))
                                                       : nn::ModulePtr(std::make_shared<nn::Identity>()));
  Tensor A = Tensor::randn({s.r, base->num_embeddings()}, W.dtype());
  Tensor B = Tensor::randn({base->embedding_dim(), s.r}, W.dtype());
  // reset_lora_parameters for embeddings: A = 0 and B ~ N(0, 1) for True, "gaussian" and the
  // Linear-only inits (pissa, olora, orthogonal) alike, as PEFT.
  if (s.init != LoraInit::Random) nn::init::zeros_(A);
  // Drawn on the CPU (the same stream on every device), placed beside W before DoRA reads both.
  if (W.device() != A.device()) {
    A = A.to(W.device());
    B = B.to(W.device());
  }
  param_dict("lora_embedding_A").insert(name, A);
  param_dict("lora_embedding_B").insert(name, B);
  if (s.use_dora) {  // DoraEmbeddingVariant.init, after A and B are set
    auto dora = std::make_shared<DoraLayer>(DoraLayer::Kind::Embedding);
    NoGradGuard g;
    dora->init(W, matmul(B, A), s.scaling());
    dict("lora_magnitude_vector").insert(name, dora);
  }
  if (!base->is_training()) train(false);
  else train(is_training());
}

Tensor LoraEmbedding::embed(const Tensor& ids, const Tensor& table) const {
  return embedding(table, ids, as_embedding(base_layer())->padding_idx());
}

Tensor LoraEmbedding::adapter_branch(const Tensor& ids, const std::string& n) {
  const Tensor& A = param_dict("lora_embedding_A")[n];  // (r, num)
  const Tensor& B = param_dict("lora_embedding_B")[n];  // (dim, r)
  return mul(linear(embed(ids, A.t()), B), scaling(n));
}

Tensor LoraEmbedding::forward(const Tensor& ids) {
  if (auto mixed = mixed_batch_forward(ids)) return *mixed;
  nn::ModulePtr base = base_layer();
  std::vector<std::string> names = prepare_forward();
  Tensor result = base->forward(ids);
  for (const auto& n : names) {
    const Tensor& A = param_dict("lora_embedding_A")[n];  // (r, num)
    const Tensor& B = param_dict("lora_embedding_B")[n];  // (dim, r)
    const double s = scaling(n);
    Tensor lora = adapter_branch(ids, n);  // (Aᵀ[ids])·Bᵀ·s
    if (!settings(n).use_dora) {
      result = add(result, lora);
      continue;
    }
    // DoraEmbeddingVariant.forward: f·result + f·lora, f per embedding dimension.
    auto dora = std::dynamic_pointer_cast<DoraLayer>(dict("lora_magnitude_vector")[n]);
    Tensor lora_weight;
    {
      NoGradGuard g;
      lora_weight = matmul(B, A);
    }
    Tensor f = dora->scale(base->param("weight"), lora_weight, s);  // (dim)
    result = add(mul(f, result), mul(f, lora));
  }
  return result;
}

Tensor LoraEmbedding::get_delta_weight(const std::string& name) const {
  NoGradGuard g;
  const Tensor& A = param_dict("lora_embedding_A")[name];
  const Tensor& B = param_dict("lora_embedding_B")[name];
  return mul(matmul(B, A).t(), scaling(name)).contiguous();
}

}  // namespace peft
