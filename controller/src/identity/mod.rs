//! The identity controller: StatefulSet semantics for apps/v1 StatefulSets (when told to own them) and
//! for roster's own CRD kind. (In progress.)
