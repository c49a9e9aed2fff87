/*
 * kustomize.d.ts — the fields of kustomize's Kustomization and Component
 * files (sigs.k8s.io/kustomize/api/types, kustomize v5), for the strict
 * check in validate-k8s.js: a misspelt key is an error, as it is for
 * `kustomize build`. Fields this project does not use are typed loosely
 * (unknown) but named, so that a typo in their name is still caught.
 */

type StringMap = { [key: string]: string };

interface Selector {
    group?: string;
    version?: string;
    kind?: string;
    name?: string;
    namespace?: string;
    labelSelector?: string;
    annotationSelector?: string;
}

interface Patch {
    path?: string;
    patch?: string;
    target?: Selector;
    options?: { [option: string]: boolean };
}

interface Image {
    name: string;
    newName?: string;
    newTag?: string;
    digest?: string;
    tagSuffix?: string;
}

interface Label {
    pairs: StringMap;
    includeSelectors?: boolean;
    includeTemplates?: boolean;
    fields?: unknown[];
}

interface Replica {
    name: string;
    count: number;
}

interface GeneratorOptions {
    labels?: StringMap;
    annotations?: StringMap;
    disableNameSuffixHash?: boolean;
    immutable?: boolean;
}

interface GeneratorArgs {
    name?: string;
    namespace?: string;
    behavior?: "create" | "replace" | "merge";
    files?: string[];
    literals?: string[];
    envs?: string[];
    /** @deprecated kustomize still reads it */
    env?: string;
    options?: GeneratorOptions;
}

interface SecretArgs extends GeneratorArgs {
    type?: string;
}

interface KustomizationFields {
    metadata?: { name?: string; namespace?: string; labels?: StringMap; annotations?: StringMap };
    resources?: string[];
    components?: string[];
    crds?: string[];
    namespace?: string;
    namePrefix?: string;
    nameSuffix?: string;
    labels?: Label[];
    commonLabels?: StringMap;
    commonAnnotations?: StringMap;
    images?: Image[];
    replicas?: Replica[];
    patches?: Patch[];
    patchesStrategicMerge?: string[];
    patchesJson6902?: unknown[];
    replacements?: unknown[];
    configMapGenerator?: GeneratorArgs[];
    secretGenerator?: SecretArgs[];
    generatorOptions?: GeneratorOptions;
    generators?: string[];
    transformers?: string[];
    validators?: string[];
    configurations?: string[];
    openapi?: StringMap;
    buildMetadata?: string[];
    sortOptions?: unknown;
    helmCharts?: unknown[];
    helmGlobals?: unknown;
    vars?: unknown[];
    bases?: string[];
}

export interface IKustomization extends KustomizationFields {
    apiVersion: "kustomize.config.k8s.io/v1beta1";
    kind: "Kustomization";
}

export interface IComponent extends KustomizationFields {
    apiVersion: "kustomize.config.k8s.io/v1alpha1";
    kind: "Component";
}
