// End-to-end training check: the seed MLP on the PEFT notebook's toy task (first 800 rows
// train, last 200 eval, batch 64, Adam lr 2e-3, 30 epochs, NLL on the LogSoftmax output)
// must reach the eval loss PyTorch reaches (≈ 0.2–0.26 with the same setup).
#include <catch2/catch.hpp>

#include <peft/peft.h>

#include "models/mlp.h"

using namespace peft;

TEST_CASE("seed MLP trained with Adam on the notebook task reaches eval loss <= 0.30", "[training]") {
  manual_seed(0);
  Generator data_gen(0);
  samples::ToyTask task = samples::make_toy_task(data_gen);
  auto model = std::make_shared<samples::MLP>(2000);
  optim::Adam opt(model->parameters(), {2e-3});
  samples::EpochResult first, last;
  for (int ep = 0; ep < 30; ++ep) {
    last = samples::run_epoch(*model, opt, task, 800, 64, data_gen);
    if (ep == 0) first = last;
  }
  INFO("first epoch eval loss " << first.eval_loss << ", last " << last.eval_loss);
  CHECK(first.eval_loss > 0.4);  // it really learned something during the run
  CHECK(last.eval_loss <= 0.30);
  CHECK(last.train_loss < 0.1);
}

TEST_CASE("seed MLP with LoRA (seq.0, seq.2; seq.4 saved) reaches eval loss <= 0.30 like PEFT's notebook",
          "[training][lora]") {
  manual_seed(0);
  Generator data_gen(0);
  samples::ToyTask task = samples::make_toy_task(data_gen);
  auto base = std::make_shared<samples::MLP>(2000);
  LoraConfig config;
  config.target_modules = {"seq.0", "seq.2"};
  config.modules_to_save = std::vector<std::string>{"seq.4"};
  auto model = get_peft_model(base, config);
  REQUIRE(model->get_nb_trainable_parameters().first == 52162);
  // The frozen base must stay frozen through training.
  Tensor w2 = model->model()->get_submodule("seq.2.base_layer")->param("weight").clone();
  optim::Adam opt(model->trainable_parameters(), {2e-3});
  samples::EpochResult first, last;
  for (int ep = 0; ep < 30; ++ep) {
    last = samples::run_epoch(*model, opt, task, 800, 64, data_gen);
    if (ep == 0) first = last;
  }
  INFO("first epoch eval loss " << first.eval_loss << ", last " << last.eval_loss);
  CHECK(first.eval_loss > 0.4);
  CHECK(last.eval_loss <= 0.30);
  Tensor w2_after = model->model()->get_submodule("seq.2.base_layer")->param("weight");
  CHECK(max(abs(sub(w2_after, w2))).item() == 0.0);
}
