#include "pxs/sender/dicom_sender.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>

namespace pxs {
namespace {

// A file of the batch, read before the association so that the presentation
// contexts can be proposed for exactly the SOP classes present.
struct LoadedFile {
  std::unique_ptr<DcmFileFormat> file;
  std::string sop_class_uid;
  std::string error;
};

LoadedFile Load(const std::string& path, StoreFileResult& result) {
  LoadedFile loaded;
  loaded.file = std::make_unique<DcmFileFormat>();
  OFCondition cond = loaded.file->loadFile(path.c_str());
  if (cond.bad()) {
    loaded.error = path + ": cannot read as DICOM: " + cond.text();
    return loaded;
  }
  OFString cls, inst;
  loaded.file->getDataset()->findAndGetOFString(DCM_SOPClassUID, cls);
  loaded.file->getDataset()->findAndGetOFString(DCM_SOPInstanceUID, inst);
  if (cls.empty() || inst.empty()) {
    loaded.error = path + ": no SOPClassUID/SOPInstanceUID";
    return loaded;
  }
  loaded.sop_class_uid = cls.c_str();
  result.sop_instance_uid = inst.c_str();
  return loaded;
}

// DcmSCU::useSecureConnection() is protected in DCMTK 3.6.7 (its DcmTLSSCU configures a
// layer of its own); the node builds its layer with pxs::tls, shared with the SCP.
struct TlsCapableScu : DcmSCU {
  using DcmSCU::useSecureConnection;
};

void FailRemaining(std::vector<StoreFileResult>& results, size_t from, const std::string& why) {
  for (size_t i = from; i < results.size(); ++i) {
    if (results[i].error.empty() && !results[i].ok) results[i].error = why;
  }
}

// The association's own errors (peer gone, timeout) end the batch; a bad file does not.
bool AssociationLost(const OFCondition& cond) {
  return cond == DUL_PEERABORTEDASSOCIATION || cond == DUL_PEERREQUESTEDRELEASE ||
         cond == DIMSE_NODATAAVAILABLE || cond == DUL_NETWORKCLOSED || cond == DUL_READTIMEOUT ||
         cond == DIMSE_ILLEGALASSOCIATION;
}

}  // namespace

void DisableNagleForDcmtk() {
  // DCMTK 3.6.7 leaves Nagle's algorithm on unless TCP_NODELAY is set in the
  // environment; a small SR would then wait on delayed ACKs. overwrite=0 keeps an
  // operator's explicit choice.
  static std::once_flag once;
  std::call_once(once, [] { ::setenv("TCP_NODELAY", "1", 0); });
}

std::string DimseStatusText(uint16_t status) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%04X", status);
  return std::string(hex) + " " + DU_cstoreStatusString(status);
}

std::vector<StoreFileResult> StoreFiles(const StoreTarget& target, const std::vector<std::string>& files,
                                        const StoreOptions& options) {
  std::vector<StoreFileResult> results(files.size());
  std::vector<LoadedFile> loaded;
  std::set<std::string> sop_classes;
  for (size_t i = 0; i < files.size(); ++i) {
    results[i].file_path = files[i];
    loaded.push_back(Load(files[i], results[i]));
    if (loaded.back().error.empty()) sop_classes.insert(loaded.back().sop_class_uid);
    else results[i].error = loaded.back().error;
  }
  if (sop_classes.empty()) return results;

  DisableNagleForDcmtk();

  const std::string peer = target.called_ae + "@" + target.host + ":" + std::to_string(target.port);
  TlsLayer tls_layer;  // declared before the SCU that uses it, so it outlives it
  TlsCapableScu scu;
  if (target.tls) {
    if (!options.tls) {
      FailRemaining(results, 0, "TLS to " + peer + " needs the [tls] settings (trusted_certificates)");
      return results;
    }
    auto layer = MakeTlsLayer(*options.tls, TlsRole::kRequestor);
    if (!layer.ok()) {
      FailRemaining(results, 0, "TLS to " + peer + ": " + layer.status().message());
      return results;
    }
    tls_layer = std::move(*layer);
  }
  scu.setAETitle(options.calling_ae.c_str());
  scu.setPeerHostName(target.host.c_str());
  scu.setPeerPort(target.port);
  scu.setPeerAETitle(target.called_ae.c_str());
  scu.setMaxReceivePDULength(options.max_pdu);
  scu.setConnectionTimeout(options.connect_timeout_s);
  scu.setACSETimeout(static_cast<Uint32>(options.acse_timeout_s));
  scu.setDIMSETimeout(static_cast<Uint32>(options.dimse_timeout_s));
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);  // so the DIMSE timeout applies
  scu.setDatasetConversionMode(OFTrue);         // Explicit -> Implicit VR if that is what was accepted
  scu.setProgressNotificationMode(OFFalse);
  OFList<OFString> syntaxes;
  syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
  for (const auto& cls : sop_classes) scu.addPresentationContext(cls.c_str(), syntaxes);

  OFCondition cond = scu.initNetwork();
  // The layer attaches to the network initNetwork() made.
  if (cond.good() && tls_layer) cond = scu.useSecureConnection(tls_layer.get());
  if (cond.good()) cond = scu.negotiateAssociation();
  if (cond.bad()) {
    std::string why = "association with " + peer + " failed: " + cond.text();
    if (cond == NET_EC_NoAcceptablePresentationContexts) {
      why = "association with " + peer + " refused every presentation context: the receiver does "
            "not accept the SOP class(es) ";
      for (const auto& cls : sop_classes) why += cls + " (" + dcmFindNameOfUID(cls.c_str(), "?") + ") ";
      why.pop_back();
    }
    FailRemaining(results, 0, why);
    return results;
  }

  size_t i = 0;
  for (; i < files.size(); ++i) {
    if (!loaded[i].error.empty()) continue;
    StoreFileResult& r = results[i];
    const T_ASC_PresentationContextID pc = scu.findPresentationContextID(loaded[i].sop_class_uid.c_str(), "");
    if (pc == 0) {
      r.error = peer + " did not accept SOP class " + loaded[i].sop_class_uid + " (" +
                dcmFindNameOfUID(loaded[i].sop_class_uid.c_str(), "?") + ")";
      continue;
    }
    Uint16 status = 0xFFFF;
    cond = scu.sendSTORERequest(pc, OFFilename(), loaded[i].file->getDataset(), status);
    if (cond.bad()) {
      r.error = "C-STORE to " + peer + " failed: " + cond.text();
      if (AssociationLost(cond) || !scu.isConnected()) {
        ++i;
        FailRemaining(results, i, "association with " + peer + " lost: " + cond.text());
        return results;
      }
      continue;
    }
    r.dimse_status = status;
    // Success, or a C-STORE warning (0xB000, 0xB006, 0xB007): the receiver kept the object.
    r.ok = status == STATUS_Success || (status & 0xF000) == 0xB000;
    if (!r.ok) r.error = peer + " answered " + DimseStatusText(status);
  }
  cond = scu.releaseAssociation();
  (void)cond;  // every file already has its answer; a failed release changes none of them
  return results;
}

}  // namespace pxs
