// hf_lora generate / train end to end on tiny random Llama and OPT checkpoints that carry a
// tokenizer.json (tests/golden/golden_hf_text.py): generate prints transformers'
// tokenizer.decode(model.generate(...)[0], skip_special_tokens=True), with and without a PEFT
// adapter; train cuts the text into run_clm.py's blocks (its initial loss is transformers' mean
// loss over those blocks), lowers the loss, and saves a PEFT adapter that loads back. Bad input
// exits 1 with a message and writes nothing.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "program_runner.h"
#include "peft.h"

using namespace peft;
namespace fs = std::filesystem;
using json = nlohmann::json;
using peft::testing::run;

namespace {

const char* const kCases[] = {"llama_sp", "opt_bl"};

std::string case_dir(const std::string& name) { return std::string(PEFT_GOLDEN_DIR) + "/hf_text/" + name; }

json expected(const std::string& name) {
  std::ifstream in(case_dir(name) + "/expected.json");
  REQUIRE(in.good());
  return json::parse(in);
}

double number_after(const std::string& text, const std::string& label) {
  std::smatch m;
  REQUIRE(std::regex_search(text, m, std::regex(label + " ([0-9.]+)")));
  return std::stod(m[1].str());
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

fs::path temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("peft_hf_text_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST_CASE("hf_lora generate: transformers' greedy text from a prompt, with and without an adapter", "[hf][samples]") {
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const json e = expected(name);
      const std::string common = bin + " generate --model " + case_dir(name) + "/model --prompt " +
                                 quoted(e.at("prompt").get<std::string>()) + " --max-new-tokens " +
                                 std::to_string(e.at("max_new_tokens").get<int>());
      auto base = run(common);
      REQUIRE(base.status == 0);
      CHECK(base.output == e.at("generate").at("text").get<std::string>() + "\n");
      auto with_adapter = run(common + " --adapter " + case_dir(name) + "/adapter");
      REQUIRE(with_adapter.status == 0);
      CHECK(with_adapter.output == e.at("generate_adapter").at("text").get<std::string>() + "\n");
    }
  }
}

TEST_CASE("hf_lora train: run_clm's blocks and loss, training lowers it, the adapter loads", "[hf][samples]") {
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const json t = expected(name).at("train_keep_linebreaks");
      const fs::path out = temp_dir(name);
      auto r = run(bin + " train --model " + case_dir(name) + "/model --data " + case_dir(name) +
                   "/train.txt --out " + out.string() + " --block-size 32 --batch-size 4 --epochs 3 --lr 1e-2 --log-every 7");
      INFO(r.output);
      REQUIRE(r.status == 0);
      CHECK(r.output.find(std::to_string(t.at("num_blocks").get<int>()) + " blocks of 32 tokens") != std::string::npos);
      const double initial = number_after(r.output, "initial loss"), final_loss = number_after(r.output, "final loss");
      CHECK(initial == Approx(t.at("mean_loss").get<double>()).epsilon(1e-5));
      CHECK(final_loss < initial - 0.1);
      CHECK(std::regex_search(r.output, std::regex("step 21/21  epoch 3.00  loss [0-9.]+  [0-9]+ tokens/s")));

      // The saved adapter is PEFT's format and reloads onto the base model.
      auto lm = nn::hf::from_pretrained(case_dir(name) + "/model");
      auto pm = PeftModel::from_pretrained(lm, out.string());
      CHECK(pm->peft_config().at("default").r == 8);
      CHECK(fs::exists(out / "adapter_model.safetensors"));
      fs::remove_all(out);
    }
  }
}

TEST_CASE("hf_lora generate / train: bad input exits 1 with a message and writes nothing", "[hf][samples]") {
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  const std::string model = case_dir("llama_sp") + "/model";
  const fs::path out = temp_dir("bad");
  auto missing = run(bin + " train --model " + model + " --data /nonexistent.txt --out " + out.string());
  CHECK(missing.status == 1);
  CHECK(missing.output.find("cannot open --data '/nonexistent.txt'") != std::string::npos);
  auto tiny = run(bin + " train --model " + model + " --data " + case_dir("llama_sp") + "/train.txt --out " +
                  out.string() + " --block-size 100000");
  CHECK(tiny.status == 1);
  CHECK(tiny.output.find("fewer than one block of 100000") != std::string::npos);
  auto bf16 = run(bin + " train --model " + model + " --data " + case_dir("llama_sp") + "/train.txt --out " +
                  out.string() + " --bf16");
  CHECK(bf16.status == 1);
  CHECK(bf16.output.find("--bf16 needs --device cuda") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
  // A model folder without tokenizer.json (the logits-only golden checkpoints).
  auto no_tok = run(bin + " generate --model " + std::string(PEFT_GOLDEN_DIR) + "/hf/llama_gqa/model --prompt hi");
  CHECK(no_tok.status == 1);
  CHECK(no_tok.output.find("has no tokenizer.json") != std::string::npos);
  CHECK(run(bin + " generate --model " + model).status == 2);                   // no prompt: usage
  CHECK(run(bin + " train --model " + model + " --data x --out y --r").status == 2);  // --r without a value
  CHECK(run(bin + " generate --model " + model + " --prompt hi --max-new-tokens 0").status == 1);
}

TEST_CASE("hf_lora on an mT5 folder: generate gives transformers' text; train on source/target pairs", "[hf][t5][samples]") {
  // tests/golden/golden_hf_t5_text.py: a tiny mT5 with a real Unigram tokenizer.
  const std::string bin = peft::testing::sample_binary("hf_lora");
  if (bin.empty()) return;
  const std::string dir = std::string(PEFT_GOLDEN_DIR) + "/hf_t5_text/mt5_sp";
  std::ifstream in(dir + "/expected.json");
  REQUIRE(in.good());
  const json e = json::parse(in);
  const io::Tokenizer tok = io::Tokenizer::from_pretrained(dir + "/model");
  CHECK(tok.encode(e.at("prompt").get<std::string>()) == e.at("prompt_ids").get<std::vector<int64_t>>());

  const std::string common = bin + " generate --model " + dir + "/model --prompt " +
                             quoted(e.at("prompt").get<std::string>()) + " --max-new-tokens 8";
  auto base = run(common);
  INFO(base.output);
  REQUIRE(base.status == 0);
  CHECK(base.output == e.at("generate").at("text").get<std::string>() + "\n");
  auto adapted = run(common + " --adapter " + dir + "/adapter");
  REQUIRE(adapted.status == 0);
  CHECK(adapted.output == e.at("generate_adapter").at("text").get<std::string>() + "\n");
  // The same ids through the library (the decoder's output starts with decoder_start_token_id).
  auto model = nn::hf::seq2seq_from_pretrained(dir + "/model");
  nn::hf::GenerationConfig g;
  g.max_new_tokens = 8;
  g.eos_token_id = 1;
  const auto& prompt = e.at("prompt_ids").get<std::vector<int64_t>>();
  const Tensor ids = Tensor::from_vector(prompt, {1, static_cast<int64_t>(prompt.size())});
  CHECK(nn::hf::generate(*model, ids, Tensor(), g).to_vector<int64_t>() ==
        e.at("generate").at("output_ids").get<std::vector<int64_t>>());

  // The pairs tokenize as run_translation.py tokenizes them.
  std::ifstream tsv(dir + "/train.tsv");
  std::string line;
  size_t n = 0;
  for (; std::getline(tsv, line); ++n) {
    const auto& p = e.at("train").at("pairs").at(n);
    CHECK(tok.encode(line.substr(0, line.find('\t'))) == p.at("source_ids").get<std::vector<int64_t>>());
    CHECK(tok.encode(line.substr(line.find('\t') + 1)) == p.at("target_ids").get<std::vector<int64_t>>());
  }
  CHECK(n == e.at("train").at("pairs").size());

  const fs::path out = temp_dir("mt5");
  auto r = run(bin + " train --model " + dir + "/model --data " + dir + "/train.tsv --out " + out.string() +
               " --batch-size 3 --epochs 6 --lr 1e-2 --log-every 6");
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("8 source/target pairs") != std::string::npos);
  const double initial = number_after(r.output, "initial loss"), final_loss = number_after(r.output, "final loss");
  CHECK(initial == Approx(e.at("train").at("mean_loss").get<double>()).epsilon(1e-4));
  CHECK(final_loss < initial - 0.5);
  CHECK(std::regex_search(r.output, std::regex("step 18/18  epoch 6.00  loss [0-9.]+  [0-9]+ examples/s")));
  auto reloaded = nn::hf::seq2seq_from_pretrained(dir + "/model");
  auto pm = PeftModel::from_pretrained(reloaded, out.string());
  CHECK(pm->peft_config().at("default").task_type == std::optional<std::string>("SEQ_2_SEQ_LM"));
  CHECK(pm->targeted_module_names().size() == 12);  // q and v of 2 encoder self-, 2 decoder self- and 2 cross-attentions
  fs::remove_all(out);

  // A line without a tab is refused naming the file and line; nothing is written.
  const fs::path bad = temp_dir("mt5_bad");
  fs::create_directories(bad);
  std::ofstream(bad / "bad.tsv") << "source one\ttarget one\nno tab here\n";
  r = run(bin + " train --model " + dir + "/model --data " + (bad / "bad.tsv").string() + " --out " + (bad / "a").string());
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("bad.tsv:2") && Catch::Contains("without a tab"));
  CHECK_FALSE(fs::exists(bad / "a"));
  fs::remove_all(bad);
}
