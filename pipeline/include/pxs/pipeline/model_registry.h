// pxs::ModelRegistry: the models this node scores with ([[models]], issue 12), loaded from
// their packages, and the routes that send instances to them. Triton's model repository
// is the reference: each model is loaded, replaced or unloaded on its own, and one that
// fails to load leaves the others serving.
//
// Lifecycle: Apply() at start and on SIGHUP. A model whose entry (package file, device,
// precision) is unchanged stays loaded; a changed one is loaded anew beside the old one
// and swapped in; a removed or disabled one is dropped. Readers take a snapshot
// (Current()): a batch claimed with the old version holds it until it finishes, so jobs
// claimed by the old version finish with it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pxs/common/status.h"
#include "pxs/config/config.h"
#include "pxs/routing/route.h"

namespace pxs {

namespace scoring {
class Scorer;
struct ModelInfo;
}  // namespace scoring

struct LoadedModel {
  std::string name;  // jobs.model_name: the entry's name, or the package's own
  ModelEntry entry;  // as configured (package, device, precision, route)
  std::string package_stamp;  // size and mtime of the package when it was loaded
  std::shared_ptr<scoring::Scorer> scorer;
};

using ModelSet = std::vector<std::shared_ptr<const LoadedModel>>;

// Makes a scorer for an entry (the node: Scorer::Create with its threads and warm-up;
// tests: whatever they need).
using ScorerFactory = std::function<StatusOr<std::unique_ptr<scoring::Scorer>>(const ModelEntry&)>;

class ModelRegistry {
 public:
  explicit ModelRegistry(ScorerFactory factory) : factory_(std::move(factory)) {}

  struct ApplyReport {
    std::vector<std::string> loaded;   // new or replaced ("name version")
    std::vector<std::string> kept;     // unchanged
    std::vector<std::string> removed;  // removed or disabled
    std::vector<std::string> failed;   // "package: reason" (the previous version, if any, stays)
  };
  // Brings the loaded set to `entries`. Never fails as a whole: each entry's failure is in
  // the report (and logged by the caller), the other models run.
  ApplyReport Apply(const std::vector<ModelEntry>& entries);

  std::shared_ptr<const ModelSet> Current() const;
  // The routes of the loaded models (config order).
  routing::Decision Route(const routing::InstanceFacts& facts) const;
  // Every model version loaded by this process, by (package model name, version): the
  // report maker interprets a score with the metadata of the version that made it.
  std::shared_ptr<const scoring::ModelInfo> Info(const std::string& model_name, const std::string& version) const;

 private:
  ScorerFactory factory_;
  mutable std::mutex mu_;
  std::shared_ptr<const ModelSet> current_ = std::make_shared<ModelSet>();
  std::shared_ptr<const routing::Router> router_ = std::make_shared<routing::Router>();
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const scoring::ModelInfo>> infos_;
};

}  // namespace pxs
