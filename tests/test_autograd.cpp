// Autograd engine semantics: leaf accumulation, retain_graph and freed graphs, grad mode,
// detach, non-scalar seeds, diamonds, requires_grad propagation and its preconditions.
#include <catch2/catch.hpp>

#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;
using V = std::vector<double>;

namespace {
Tensor leaf(const V& v, const Shape& shape) { return Tensor::from_vector(v, shape).set_requires_grad(true); }
}  // namespace

TEST_CASE("a leaf's gradient accumulates across two backward calls", "[autograd]") {
  Tensor x = leaf({1, 2, 3}, {3});
  sum(mul(x, x)).backward();  // d/dx Σx² = 2x
  CHECK(x.grad().to_vector<double>() == V{2, 4, 6});
  sum(mul(x, 3.0)).backward();  // a new graph: + 3
  CHECK(x.grad().to_vector<double>() == V{5, 7, 9});
  CHECK(x.grad().shape() == x.shape());
  CHECK_FALSE(x.grad().requires_grad());
}

TEST_CASE("retain_graph allows a second backward through the same graph", "[autograd]") {
  Tensor x = leaf({1, -2}, {2});
  Tensor y = sum(exp(mul(x, 2.0)));
  y.backward(Tensor(), /*retain_graph=*/true);
  V first = x.grad().to_vector<double>();
  y.backward();  // allowed: the graph was retained; frees it now
  V second = x.grad().to_vector<double>();
  for (size_t i = 0; i < first.size(); ++i) CHECK(second[i] == Approx(2 * first[i]));
}

TEST_CASE("backward through a freed graph throws an error mentioning 'second time'", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(mul(x, x));
  y.backward();
  V g = x.grad().to_vector<double>();
  CHECK_THROWS_AS(y.backward(), Error);
  CHECK_THROWS_WITH(y.backward(), Contains("second time"));
  CHECK_THROWS_WITH(y.backward(), Contains("retain_graph"));
  CHECK(x.grad().to_vector<double>() == g);  // no partial accumulation
  SECTION("also when only part of the graph is shared") {
    Tensor h = mul(x, x);
    sum(h).backward();
    CHECK_THROWS_WITH(sum(add(h, 1.0)).backward(), Contains("second time"));
  }
}

TEST_CASE("NoGradGuard records nothing and restores grad mode", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  CHECK(GradMode::is_enabled());
  {
    NoGradGuard g;
    CHECK_FALSE(GradMode::is_enabled());
    Tensor y = mul(exp(x), 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK_FALSE(x.unsqueeze(0).t().requires_grad());  // views too
    CHECK_FALSE(matmul(x, x).requires_grad());
    {
      NoGradGuard nested;
      CHECK_FALSE(GradMode::is_enabled());
    }
    CHECK_FALSE(GradMode::is_enabled());  // nested guard restores "off", not "on"
  }
  CHECK(GradMode::is_enabled());
  Tensor z = mul(x, 2.0);
  CHECK(z.requires_grad());
  CHECK(z.grad_fn() != nullptr);
  CHECK(z.grad_fn()->name() == "MulBackward");
}

TEST_CASE("detach cuts history but shares storage", "[autograd]") {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = mul(x, x);
  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  CHECK(d.storage() == y.storage());
  // Only the path through y (not through d) reaches x: d/dx (x·d) = d = x² (d held constant).
  sum(mul(x, d)).backward();
  CHECK(x.grad().to_vector<double>() == V{1, 4, 9});
}

TEST_CASE("backward of a non-scalar requires a seed and uses it", "[autograd]") {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = mul(x, 3.0);
  CHECK_THROWS_WITH(y.backward(), Contains("scalar"));
  CHECK_FALSE(x.grad().defined());
  CHECK_THROWS_WITH(y.backward(Tensor::ones({4}, DType::F64)), Contains("shape"));
  y.backward(Tensor::from_vector(V{1, 0, -1, 2}, {2, 2}));
  CHECK(x.grad().to_vector<double>() == V{3, 0, -3, 6});
  SECTION("a one-element non-0-d output needs no seed") {
    Tensor z = leaf({2}, {1, 1});
    mul(z, z).backward();
    CHECK(z.grad().to_vector<double>() == V{4});
  }
}

TEST_CASE("zero_grad drops the gradient so the next backward starts fresh", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  sum(mul(x, 5.0)).backward();
  CHECK(x.grad().defined());
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  sum(mul(x, 2.0)).backward();
  CHECK(x.grad().to_vector<double>() == V{2, 2});
}

TEST_CASE("a diamond graph sums the gradients of both paths", "[autograd]") {
  Tensor x = leaf({0.5, -1.5}, {2});
  Tensor a = exp(x), b = mul(x, x);  // x used twice
  Tensor y = sum(add(mul(a, b), a));
  y.backward();
  V xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double e = std::exp(xv[i]);
    CHECK(g[i] == Approx(e * xv[i] * xv[i] + e * 2 * xv[i] + e));
  }
  SECTION("the same tensor as both operands") {
    Tensor z = leaf({3}, {});
    mul(z, z).backward();
    CHECK(z.grad().item() == 6);
    Tensor w = leaf({3}, {});
    add(w, w).backward();
    CHECK(w.grad().item() == 2);
  }
}

TEST_CASE("gradients do not flow into tensors that do not require grad", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor c = Tensor::from_vector(V{3, 4}, {2});
  Tensor y = mul(x, c);
  CHECK(y.requires_grad());
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == V{3, 4});
  CHECK_FALSE(c.grad().defined());
  CHECK_FALSE(c.requires_grad());
  // An op of constants only is not recorded and cannot be backpropagated.
  Tensor k = mul(c, c);
  CHECK_FALSE(k.requires_grad());
  CHECK_THROWS_AS(sum(k).backward(), Error);
  SECTION("a frozen weight in linear") {
    Tensor w = Tensor::from_vector(V{1, 2, 3, 4}, {2, 2});
    Tensor xi = leaf({1, 1}, {1, 2});
    sum(linear(xi, w)).backward();
    CHECK_FALSE(w.grad().defined());
    CHECK(xi.grad().to_vector<double>() == V{4, 6});
  }
}

TEST_CASE("set_requires_grad is refused on non-leaves and integer tensors", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul(x, 2.0);
  CHECK_FALSE(y.is_leaf());
  CHECK_THROWS_AS(y.set_requires_grad(false), Error);
  CHECK_THROWS_WITH(y.requires_grad_(), Contains("leaf"));
  Tensor i = Tensor::arange(3, DType::I64);
  CHECK_THROWS_WITH(i.set_requires_grad(true), Contains("I64"));
  CHECK_FALSE(i.requires_grad());
  CHECK_NOTHROW(i.set_requires_grad(false));
  // Turning it off on a leaf is fine and stops recording.
  x.set_requires_grad(false);
  CHECK_FALSE(mul(x, 2.0).requires_grad());
}

TEST_CASE("requires_grad propagates through ops and views; outputs are non-leaves", "[autograd]") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  for (const Tensor& t : {x.t(), x.reshape({6}), x.slice(1, 0, 2), x.select(0, 1), x.expand({2, 2, 3}), x.clone(),
                          relu(x), sum(x, {1}), softmax(x, 1)}) {
    CHECK(t.requires_grad());
    CHECK_FALSE(t.is_leaf());
  }
  CHECK(x.is_leaf());
  // A view's gradient lands in the right places of its base.
  sum(mul(x.select(1, 2), 10.0)).backward();
  CHECK(x.grad().to_vector<double>() == V{0, 0, 10, 0, 0, 10});
}

TEST_CASE("integer outputs of a differentiable op carry no gradient", "[autograd]") {
  Tensor x = leaf({3, 1, 2}, {3});
  auto [v, i] = max(x, 0);
  CHECK(v.requires_grad());
  CHECK_FALSE(i.requires_grad());
  CHECK(i.dtype() == DType::I64);
  v.backward();
  CHECK(x.grad().to_vector<double>() == V{1, 0, 0});
}

TEST_CASE("backward on a leaf seeds its own gradient", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  x.backward(Tensor::from_vector(V{5, 6}, {2}));
  CHECK(x.grad().to_vector<double>() == V{5, 6});
}

TEST_CASE("a gradient is owned by its leaf, not aliased with the seed", "[autograd]") {
  Tensor x = leaf({1, 2}, {2});
  Tensor seed = Tensor::from_vector(V{1, 1}, {2});
  add(x, 0.0).backward(seed);
  {
    NoGradGuard g;
    seed.fill_(100);
  }
  CHECK(x.grad().to_vector<double>() == V{1, 1});
}

TEST_CASE("a long chain backpropagates without recursion limits", "[autograd]") {
  Tensor x = leaf({1}, {1});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add(y, 1e-3);
  y.backward();
  CHECK(x.grad().item() == 1);
}

TEST_CASE("dropping a very deep graph does not recurse per node", "[autograd]") {
  // 1e6 nodes: a recursive teardown needs ~100 MB of stack (far past the 8 MB default).
  Tensor x = leaf({1}, {1});
  Tensor y = x;
  for (int i = 0; i < 1000000; ++i) y = add(y, 1.0);
  CHECK(y.item() == 1000001);
  y = Tensor();  // the whole chain is released here
  CHECK(x.requires_grad());
}

TEST_CASE("to() between float dtypes carries the gradient back in the source dtype", "[autograd]") {
  Tensor x = leaf({1.5, -2}, {2});
  Tensor y = mul(x.to(DType::F32), 3.0);
  CHECK(y.dtype() == DType::F32);
  CHECK(y.grad_fn()->name() == "MulBackward");
  sum(y).backward();
  CHECK(x.grad().dtype() == DType::F64);
  CHECK(x.grad().to_vector<double>() == V{3, 3});
  // To an integer dtype there is no gradient path.
  CHECK_FALSE(x.to(DType::I64).requires_grad());
}
