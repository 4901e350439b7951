#include "pxs/pipeline/model_registry.h"

#include <sys/stat.h>

#include <set>

#include "pxs/scoring/scorer.h"

namespace pxs {
namespace {

// A package replaced on disk (same path, new file) must be loaded again on SIGHUP.
std::string PackageStamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

bool SameLoad(const LoadedModel& m, const ModelEntry& e, const std::string& stamp) {
  return m.entry.package == e.package && m.entry.device == e.device && m.entry.precision == e.precision &&
         m.package_stamp == stamp;
}

}  // namespace

ModelRegistry::ApplyReport ModelRegistry::Apply(const std::vector<ModelEntry>& entries) {
  ApplyReport report;
  std::shared_ptr<const ModelSet> before = Current();
  auto next = std::make_shared<ModelSet>();
  std::set<std::string> names;
  std::vector<std::shared_ptr<const scoring::ModelInfo>> new_infos;
  for (const ModelEntry& entry : entries) {
    if (!entry.enabled) continue;
    const std::string stamp = PackageStamp(entry.package);
    // The previous version of this entry: same configured name, or (for entries named by
    // their package) the same package path.
    std::shared_ptr<const LoadedModel> previous;
    for (const auto& m : *before) {
      if (entry.name.empty() ? m->entry.name.empty() && m->entry.package == entry.package : m->entry.name == entry.name) {
        previous = m;
      }
    }
    std::shared_ptr<const LoadedModel> chosen;
    if (previous && SameLoad(*previous, entry, stamp)) {
      auto kept = std::make_shared<LoadedModel>(*previous);
      kept->entry = entry;  // the route may have changed
      chosen = kept;
      report.kept.push_back(previous->name);
    } else {
      auto scorer = factory_(entry);
      if (!scorer.ok()) {
        // The entry's name first: the operator fixes a [[models]] table, not a file.
        report.failed.push_back((entry.name.empty() ? "" : entry.name + ": ") + scorer.status().message() +
                                (previous ? " (version " + previous->scorer->model().version + " keeps running)" : ""));
        chosen = previous;
      } else {
        auto loaded = std::make_shared<LoadedModel>();
        loaded->entry = entry;
        loaded->package_stamp = stamp;
        loaded->scorer = std::shared_ptr<scoring::Scorer>(std::move(*scorer));
        loaded->name = entry.name.empty() ? loaded->scorer->model().name : entry.name;
        new_infos.push_back(std::make_shared<scoring::ModelInfo>(loaded->scorer->model()));
        report.loaded.push_back(loaded->name + " " + loaded->scorer->model().version);
        chosen = loaded;
      }
    }
    if (!chosen) continue;
    if (!names.insert(chosen->name).second) {
      report.failed.push_back(entry.package + ": another model is already named '" + chosen->name +
                              "'; give one of them its own name in [[models]]");
      continue;
    }
    next->push_back(chosen);
  }
  for (const auto& m : *before) {
    if (!names.count(m->name)) report.removed.push_back(m->name);
  }
  std::vector<routing::RoutedModel> routes;
  for (const auto& m : *next) routes.push_back({m->name, m->entry.route});
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& info : new_infos) infos_[{info->name, info->version}] = info;
  current_ = std::move(next);
  router_ = std::make_shared<routing::Router>(std::move(routes));
  return report;
}

std::shared_ptr<const ModelSet> ModelRegistry::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

routing::Decision ModelRegistry::Route(const routing::InstanceFacts& facts) const {
  std::shared_ptr<const routing::Router> router;
  {
    std::lock_guard<std::mutex> lock(mu_);
    router = router_;
  }
  return router->Decide(facts);
}

std::shared_ptr<const scoring::ModelInfo> ModelRegistry::Info(const std::string& model_name,
                                                              const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = infos_.find({model_name, version});
  return it == infos_.end() ? nullptr : it->second;
}

}  // namespace pxs
