// The seed MLP with LoRA, as ../shared/seeds/custom_models.md and PEFT's multilayer-perceptron
// notebook: LoRA on seq.0 / seq.2, seq.4 trained in full (modules_to_save), Adam lr 2e-3,
// batch 64, 30 epochs; then save the adapter, load it into a fresh MLP and check the outputs.
//   usage: mlp_lora [--epochs N] [--out DIR] [--device cpu|cuda[:i]] [--profile TRACE.json]
//   --device cuda: the model and the data on the GPU (the adapters follow the base layers).
//   Under `mpirun -np K` (a build with MPI) it trains data-parallel: the global batch stays 64,
//   each rank runs its shard (peft::DataParallel), rank 0 prints and saves, every rank reloads
//   the saved adapter; the adapter equals the one-process run's within 1e-5.
//   --profile: epoch 1 (the second; 0 when only one) runs under peft::profiler; its op table is
//   printed and its Chrome trace written to TRACE.json (open it in ui.perfetto.dev).
//          mlp_lora infer --weights BASE.safetensors [--adapter DIR] --input X.safetensors --out Y.safetensors
// `infer` loads an MLP state dict (its hidden size read from seq.0.weight), optionally a LoRA
// adapter directory (PEFT's or ours), and writes the eval-mode output for tensor "x" as "y".
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "models/mlp.h"
#include "models/progress.h"

using namespace peft;

static int run_infer(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 2; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
  if ((argc - 2) % 2 != 0 || !opt.count("--weights") || !opt.count("--input") || !opt.count("--out") ||
      opt.size() != 3 + opt.count("--adapter")) {
    std::fprintf(stderr, "usage: %s infer --weights BASE.safetensors [--adapter DIR] --input X.safetensors --out "
                 "Y.safetensors\n", argv[0]);
    return 2;
  }
  try {
    nn::StateDict sd = io::load_file(opt["--weights"]);
    nn::ModulePtr model = std::make_shared<samples::MLP>(io::find_tensor(sd, "seq.0.weight").size(0));
    model->load_state_dict(sd);
    if (opt.count("--adapter")) model = PeftModel::from_pretrained(model, opt["--adapter"]);
    model->eval();
    NoGradGuard g;
    Tensor y = model->forward(io::find_tensor(io::load_file(opt["--input"]), "x"));
    io::save_file({{"y", y}}, opt["--out"]);
    std::cout << "wrote y " << shape_str(y.shape()) << " to " << opt["--out"] << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "infer") return run_infer(argc, argv);
  int64_t epochs = 30;
  std::string out_dir = (std::filesystem::temp_directory_path() / "peft-mlp-lora").string();
  std::string device = "cpu", trace;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--epochs" && i + 1 < argc) epochs = std::stoll(argv[++i]);
    else if (a == "--out" && i + 1 < argc) out_dir = argv[++i];
    else if (a == "--device" && i + 1 < argc) device = argv[++i];
    else if (a == "--profile" && i + 1 < argc) trace = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--epochs N] [--out DIR] [--device cpu|cuda[:i]] [--profile TRACE.json]\n",
                   argv[0]);
      return 2;
    }
  }
  return dist::run_guarded([&]() -> int {
    dist::Communicator& comm = dist::world();
    const bool lead = comm.rank() == 0;  // rank 0 prints and writes; every rank trains
    Device dev = Device::parse(device);
    // Data-parallel on GPUs: "cuda" means this rank's GPU (one per rank, by node-local rank).
    if (comm.size() > 1 && device == "cuda" && cuda_device_count() > 0)
      dev = Device::cuda(dist::local_rank() % cuda_device_count());
    PEFT_CHECK(!dev.is_cuda() || dev.index < cuda_device_count(), "--device ", dev.str(), ": this machine has ",
               cuda_device_count(), " CUDA device(s)", built_with_cuda() ? "" : " (this build has no CUDA backend)");
    manual_seed(0);
    Generator data_gen(0);
    samples::ToyTask task = samples::make_toy_task(data_gen);
    task.X = task.X.to(dev);
    task.y = task.y.to(dev);
    auto base = std::make_shared<samples::MLP>();
    if (lead) {
      if (comm.size() > 1) std::printf("data-parallel: world size %d (%s)\n", comm.size(), comm.backend().c_str());
      std::cout << "[";
      bool first = true;
      for (auto& [name, m] : base->named_modules()) {
        std::cout << (first ? "" : ",\n ") << "('" << name << "', " << m->type_name() << ")";
        first = false;
      }
      std::cout << "]\n";
      // The base weights a real user would have from pretraining; saved so the reload below
      // starts from the same base model.
      std::filesystem::create_directories(out_dir);
      io::save_file(base->state_dict(), out_dir + "/base_model.safetensors");
    }
    base->to(dev);  // get_peft_model then creates the adapters there too

    LoraConfig config;
    config.target_modules = {"seq.0", "seq.2"};
    config.modules_to_save = std::vector<std::string>{"seq.4"};
    auto model = get_peft_model(base, config);
    if (lead) model->print_trainable_parameters();
    std::optional<DataParallel> dp;
    if (comm.size() > 1) dp.emplace(*model, comm);  // rank 0's initial adapter on every rank

    optim::Adam opt(model->trainable_parameters(), {2e-3});
    samples::EpochResult r;
    const int64_t n_train = 800, batch = 64;
    samples::ProgressLine progress(epochs, (n_train + batch - 1) / batch, /*every=*/5);
    const int64_t profiled = epochs > 1 ? 1 : 0;
    for (int64_t ep = 0; ep < epochs; ++ep) {
      std::optional<profiler::Profile> prof;
      if (!trace.empty() && ep == profiled && lead) prof.emplace();
      auto t0 = std::chrono::steady_clock::now();
      progress.start_epoch(ep);
      samples::StepCallback on_step = nullptr;
      if (lead) on_step = [&](int64_t step, int64_t, double loss, int64_t n) { progress.step(step, loss, n); };
      r = samples::run_epoch(*model, opt, task, n_train, batch, data_gen, on_step, dp ? &*dp : nullptr);
      if (lead) progress.end_epoch();
      if (dev.is_cuda()) cuda::synchronize(dev);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (lead) std::printf("epoch %2lld  train loss %.4f  eval loss %.4f  (%.2f s, %.0f samples/s, %.3f ms/step on %s)\n",
                  static_cast<long long>(ep), r.train_loss, r.eval_loss, dt, static_cast<double>(n_train) / dt,
                  1e3 * dt / static_cast<double>((n_train + batch - 1) / batch), dev.str().c_str());
      std::fflush(stdout);
      if (prof) {
        prof->stop();
        std::cout << profiler::key_averages_table(false, dev.is_cuda() ? "cuda_total" : "host_total", 15);
        profiler::export_chrome_trace(trace);
        std::cout << "profile of epoch " << ep << ": Chrome trace written to " << trace << "\n";
      }
    }
    if (lead) {
      std::printf("final eval loss %.4f\n", r.eval_loss);
      if (dp)
        std::printf("data-parallel: %lld bytes of gradients all-reduced per step, %.3f ms per step in all-reduce\n",
                    static_cast<long long>(dp->bytes_per_step()),
                    1e3 * dp->stats().seconds / static_cast<double>(std::max<int64_t>(dp->stats().steps, 1)));
      model->save_pretrained(out_dir);
      std::cout << "saved adapter to " << out_dir << "\n";
    }
    comm.barrier();  // every rank reloads what rank 0 saved
    auto fresh = std::make_shared<samples::MLP>();
    fresh->load_state_dict(io::load_file(out_dir + "/base_model.safetensors"));
    fresh->to(dev);
    auto reloaded = PeftModel::from_pretrained(fresh, out_dir);
    model->eval();
    reloaded->eval();
    NoGradGuard g;
    Tensor x = task.X.slice(0, 800, 1000);
    double max_diff = max(abs(sub(model->forward(x), reloaded->forward(x)))).item();
    if (lead) std::printf("reloaded adapter: max |difference| of outputs = %.3g\n", max_diff);
    PEFT_CHECK(max_diff <= 1e-5, "reloaded outputs differ (max |difference| ", max_diff, ")");
    return 0;
  });
}
