"""Stand-in of Slicer's SampleData module: registered sources are "downloaded" from their URIs
(``file://`` here) into a cache folder, checked against their checksums and loaded."""

import hashlib
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import slicer


class SampleDataSource:
    def __init__(
        self,
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        checksums=None,
        loadFileTypes=None,
        thumbnailFileName=None,
        **kwargs,
    ):
        def asList(value):
            return list(value) if isinstance(value, (list, tuple)) else [value]

        self.sampleName = sampleName
        self.uris = asList(uris)
        self.fileNames = asList(fileNames)
        self.nodeNames = asList(nodeNames)
        self.checksums = asList(checksums) if checksums else [None] * len(self.uris)
        self.loadFileTypes = asList(loadFileTypes) if loadFileTypes else [None] * len(self.uris)
        self.thumbnailFileName = thumbnailFileName
        if (
            not len(self.uris)
            == len(self.fileNames)
            == len(self.nodeNames)
            == len(self.checksums)
            == len(self.loadFileTypes)
        ):
            raise ValueError(
                "SampleDataSource: uris, fileNames, nodeNames, checksums and loadFileTypes differ in length"
            )


class SampleDataLogic:
    @staticmethod
    def registerCustomSampleDataCategory(category, title):
        categories = getattr(slicer.modules, "sampleDataSourceCategories", {})
        categories.setdefault(category, {})["title"] = title
        slicer.modules.sampleDataSourceCategories = categories

    @staticmethod
    def registerCustomSampleDataSource(
        category="Custom",
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        customDownloader=None,
        thumbnailFileName=None,
        loadFileTypes=None,
        loadFiles=None,
        loadFileProperties={},  # noqa: B006 (Slicer's signature)
        checksums=None,
        loadFileType=None,
    ):
        sources = getattr(slicer.modules, "sampleDataSources", {})
        source = SampleDataSource(
            sampleName=sampleName,
            uris=uris,
            fileNames=fileNames,
            nodeNames=nodeNames,
            checksums=checksums,
            loadFileTypes=loadFileTypes,
            thumbnailFileName=thumbnailFileName,
        )
        existing = [s for s in sources.get(category, []) if s.sampleName != sampleName]
        sources[category] = existing + [source]
        slicer.modules.sampleDataSources = sources

    def sourceForSampleName(self, sampleName):
        for sources in getattr(slicer.modules, "sampleDataSources", {}).values():
            for source in sources:
                if source.sampleName == sampleName:
                    return source
        return None

    def downloadFile(self, uri, destFolderPath, name, checksum=None, forceDownload=False):
        filePath = os.path.join(destFolderPath, name)
        with urllib.request.urlopen(uri) as response, open(filePath, "wb") as stream:
            shutil.copyfileobj(response, stream)
        if checksum:
            algorithm, digest = checksum.split(":", 1)
            actual = hashlib.new(algorithm.lower(), Path(filePath).read_bytes()).hexdigest()
            if actual != digest:
                os.remove(filePath)
                raise ValueError(f"Checksum verification failed for {uri}")
        return filePath

    def downloadSamples(self, sampleName):
        source = self.sourceForSampleName(sampleName)
        if source is None:
            return []
        cacheFolder = Path(slicer.app.temporaryPath) / "SampleDataCache"
        cacheFolder.mkdir(parents=True, exist_ok=True)
        nodes = []
        for uri, fileName, nodeName, checksum, fileType in zip(
            source.uris, source.fileNames, source.nodeNames, source.checksums, source.loadFileTypes
        ):
            filePath = self.downloadFile(uri, str(cacheFolder), fileName, checksum)
            nodes.append(slicer.util.loadNodeFromFile(filePath, fileType, {"name": nodeName}))
        return nodes

    def downloadSample(self, sampleName):
        return self.downloadSamples(sampleName)[0]


def downloadSamples(sampleName):
    return SampleDataLogic().downloadSamples(sampleName)


def downloadSample(sampleName):
    return SampleDataLogic().downloadSample(sampleName)
